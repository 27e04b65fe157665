// Runs once per member, when it starts on an empty volume (docker-entrypoint-initdb.d), as the root
// user; once the replica set is initiated (replica-set.js), the members keep the primary's users. One database and one user per service; no service can read another's database.
// The passwords come from the Secret mongodb-credentials (environment of the mongod container), never
// from this file, which is why it can live in a ConfigMap. The same passwords appear in the services'
// connection strings (Secrets <service>-mongodb, key url): see deploy/k8s/README.md.
const users = [
  // [user, database, role, environment variable holding the password]
  ["registration", "registration", "readWrite", "REGISTRATION_PASSWORD"],
  ["domain_verify", "domain_verify", "readWrite", "DOMAIN_VERIFY_PASSWORD"],
  ["signer", "signer", "readWrite", "SIGNER_PASSWORD"],
  // the public status responder only reads what the issuing signer wrote
  ["signer_status", "signer", "read", "SIGNER_STATUS_PASSWORD"],
  ["notifier", "notifier", "readWrite", "NOTIFIER_PASSWORD"],
  ["acme", "acme", "readWrite", "ACME_PASSWORD"],
  // the backup CronJob (python -m shared.backup dump) reads every database and nothing else
  ["backup", "admin", "backup", "BACKUP_PASSWORD"],
];
for (const [user, database, role, variable] of users) {
  const pwd = process.env[variable];
  if (!pwd) {
    throw new Error(`${variable} is not set: create the Secret mongodb-credentials first`);
  }
  db.getSiblingDB(database).createUser({ user, pwd, roles: [{ role, db: database }] });
  print(`created user ${user} (${role} on ${database})`);
}
