// Run by the Job mongodb-replica-set (mongosh --nodb): initiates the replica set rs0 once, from
// mongodb-0, as the root user. A replica set that exists already is left as it is, so the Job may run
// again (a re-applied manifest) without effect. Credentials come from the environment (the Secret
// mongodb-credentials), never from this file or the command line.
const user = encodeURIComponent(process.env.ROOT_USERNAME);
const password = encodeURIComponent(process.env.ROOT_PASSWORD);
const admin = connect(
  `mongodb://${user}:${password}@mongodb-0.mongodb:27017/admin` +
    "?tls=true&tlsCAFile=/tls/ca.crt&directConnection=true&authSource=admin",
);
let initiated = true;
try {
  admin.adminCommand({ replSetGetStatus: 1 });
} catch (error) {
  if (error.codeName !== "NotYetInitialized") throw error;
  initiated = false;
}
if (initiated) {
  print("replica set rs0 is initiated already");
} else {
  admin.adminCommand({
    replSetInitiate: {
      _id: "rs0",
      members: [...Array(Number(process.env.MEMBERS)).keys()].map((n) => ({
        _id: n,
        host: `mongodb-${n}.mongodb:27017`,
      })),
    },
  });
  print(`replica set rs0 initiated with ${process.env.MEMBERS} members`);
}
