// Command go-consumer reads the CA's certificate events from Kafka, checks each one against the
// published contract (CloudEvents 1.0 headers in Kafka binary mode, and the JSON Schema of its
// ce_type from shared/events/schemas), drops re-deliveries by ce_id, and prints one JSON line per
// record and a summary. It exits 1 if any event broke the contract.
//
// It is the Go twin of examples/cert_consumer.py: the same topic, the same schema files, no
// Python. See README.md beside this file.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"mime"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// typePrefix is the family of event types the cert topic carries.
const typePrefix = "org.cacert.cert."

type config struct {
	bootstrap string
	prefix    string
	group     string
	schemas   string
	since     time.Time
	max       int
	timeout   time.Duration
	follow    bool
	passes    int
}

// Line is what the program prints for each record.
type Line struct {
	Type      string `json:"type"`
	ID        string `json:"id"`
	Serial    string `json:"serial,omitempty"`
	RequestID string `json:"request_id,omitempty"`
	Partition int32  `json:"partition"`
	Offset    int64  `json:"offset"`
	Valid     bool   `json:"valid"`
	Duplicate bool   `json:"duplicate,omitempty"`
	Error     string `json:"error,omitempty"`
}

// Summary is printed last, as {"summary": {...}}.
type Summary struct {
	Topic      string         `json:"topic"`
	Passes     int            `json:"passes"`
	Records    int            `json:"records"`
	Valid      int            `json:"valid"`
	Invalid    int            `json:"invalid"`
	Duplicates int            `json:"duplicates"`
	ByType     map[string]int `json:"by_type"`
}

func env(name, fallback string) string {
	if v, ok := os.LookupEnv(name); ok && v != "" {
		return v
	}
	return fallback
}

func envInt(name string, fallback int) int {
	if n, err := strconv.Atoi(os.Getenv(name)); err == nil {
		return n
	}
	return fallback
}

func envDuration(name string, fallback time.Duration) time.Duration {
	if d, err := time.ParseDuration(os.Getenv(name)); err == nil {
		return d
	}
	return fallback
}

func parseFlags(args []string) (config, error) {
	var c config
	fs := flag.NewFlagSet("go-consumer", flag.ContinueOnError)
	fs.StringVar(&c.bootstrap, "bootstrap", env("CACERT_KAFKA_BOOTSTRAP", "127.0.0.1:19092"), "Kafka bootstrap servers, comma separated (env CACERT_KAFKA_BOOTSTRAP)")
	fs.StringVar(&c.prefix, "prefix", env("CACERT_KAFKA_TOPIC_PREFIX", "cacert."), "topic prefix; the topic read is <prefix>cert (env CACERT_KAFKA_TOPIC_PREFIX)")
	fs.StringVar(&c.group, "group", env("GO_CONSUMER_GROUP", ""), "consumer group: commit offsets after each batch and resume there next time; empty reads the whole topic and commits nothing (env GO_CONSUMER_GROUP)")
	fs.StringVar(&c.schemas, "schemas", env("GO_CONSUMER_SCHEMAS", ""), "directory of the event JSON Schemas, <ce_type>.json (env GO_CONSUMER_SCHEMAS; default: the repo's shared/events/schemas, found from the working directory)")
	since := fs.String("since", env("GO_CONSUMER_SINCE", ""), "read only events written at or after this time: RFC 3339, or a duration meaning that long ago (env GO_CONSUMER_SINCE)")
	fs.IntVar(&c.max, "max", envInt("GO_CONSUMER_MAX", 0), "stop after this many records, 0 for no limit (env GO_CONSUMER_MAX)")
	fs.DurationVar(&c.timeout, "timeout", envDuration("GO_CONSUMER_TIMEOUT", 0), "stop after this long, 0 for no limit; without -follow, not reaching the end in time is an error (env GO_CONSUMER_TIMEOUT)")
	fs.BoolVar(&c.follow, "follow", false, "keep waiting for new events instead of stopping at the end of the topic")
	fs.IntVar(&c.passes, "passes", 1, "read the topic from the start this many times in one process (no -group, no -follow): every pass after the first is a re-delivery that de-duplication must drop")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if *since != "" {
		if ago, err := time.ParseDuration(*since); err == nil {
			c.since = time.Now().Add(-ago)
		} else if c.since, err = time.Parse(time.RFC3339, *since); err != nil {
			return c, fmt.Errorf("-since %q is neither an RFC 3339 time nor a duration", *since)
		}
	}
	if c.passes < 1 {
		return c, errors.New("-passes must be at least 1")
	}
	if c.passes > 1 && (c.group != "" || c.follow) {
		return c, errors.New("-passes > 1 re-reads the topic from the start, so it needs no -group and no -follow")
	}
	if c.schemas == "" {
		for _, dir := range []string{"shared/events/schemas", "../../shared/events/schemas"} {
			if st, err := os.Stat(dir); err == nil && st.IsDir() {
				c.schemas = dir
				break
			}
		}
		if c.schemas == "" {
			return c, errors.New("no schema directory: pass -schemas <repo>/shared/events/schemas")
		}
	}
	return c, nil
}

// loadSchemas compiles every <prefix>*.json in dir, keyed by the ce_type its file is named after.
// Formats (date-time, ...) are asserted, as the CA's own services do.
func loadSchemas(dir, prefix string) (map[string]*jsonschema.Schema, error) {
	paths, err := filepath.Glob(filepath.Join(dir, prefix+"*.json"))
	if err != nil {
		return nil, err
	}
	if len(paths) == 0 {
		return nil, fmt.Errorf("no %s*.json schemas in %s", prefix, dir)
	}
	compiler := jsonschema.NewCompiler()
	compiler.AssertFormat()
	schemas := make(map[string]*jsonschema.Schema, len(paths))
	for _, path := range paths {
		abs, err := filepath.Abs(path)
		if err != nil {
			return nil, err
		}
		schema, err := compiler.Compile(abs)
		if err != nil {
			return nil, fmt.Errorf("schema %s: %w", path, err)
		}
		schemas[strings.TrimSuffix(filepath.Base(path), ".json")] = schema
	}
	return schemas, nil
}

// Checker validates records and remembers the ids of the events already handled.
type Checker struct {
	schemas map[string]*jsonschema.Schema
	seen    map[string]struct{} // in memory only: a restarted process would act on a re-delivery again
	summary Summary
}

func headers(record *kgo.Record) map[string]string {
	h := make(map[string]string, len(record.Headers))
	for _, header := range record.Headers {
		h[header.Key] = string(header.Value)
	}
	return h
}

// envelope checks the CloudEvents attributes; it returns the ce_type's schema.
func (c *Checker) envelope(h map[string]string) (*jsonschema.Schema, error) {
	if v := h["ce_specversion"]; v != "1.0" {
		return nil, fmt.Errorf("ce_specversion is %q, want 1.0", v)
	}
	for _, name := range []string{"ce_id", "ce_type", "ce_source"} {
		if h[name] == "" {
			return nil, fmt.Errorf("header %s is missing", name)
		}
	}
	if media, _, err := mime.ParseMediaType(h["content-type"]); err != nil || media != "application/json" {
		return nil, fmt.Errorf("content-type is %q, want application/json", h["content-type"])
	}
	schema, ok := c.schemas[h["ce_type"]]
	if !ok {
		return nil, fmt.Errorf("unknown ce_type %q", h["ce_type"])
	}
	return schema, nil
}

// Check handles one record: a re-delivered event is dropped, any other is validated.
func (c *Checker) Check(record *kgo.Record) Line {
	h := headers(record)
	line := Line{Type: h["ce_type"], ID: h["ce_id"], Partition: record.Partition, Offset: record.Offset}
	c.summary.Records++
	if _, dup := c.seen[line.ID]; dup && line.ID != "" {
		line.Valid, line.Duplicate = true, true
		c.summary.Duplicates++
		return line
	}
	err := c.validate(h, record.Value, &line)
	if err != nil {
		line.Error = strings.Join(strings.Fields(err.Error()), " ")
		c.summary.Invalid++
		return line
	}
	// Only a valid event counts as handled: an invalid one re-delivered later is checked again.
	c.seen[line.ID] = struct{}{}
	line.Valid = true
	c.summary.Valid++
	c.summary.ByType[line.Type]++
	return line
}

func (c *Checker) validate(h map[string]string, value []byte, line *Line) error {
	schema, err := c.envelope(h)
	if err != nil {
		return err
	}
	data, err := jsonschema.UnmarshalJSON(bytes.NewReader(value))
	if err != nil {
		return fmt.Errorf("value is not JSON: %w", err)
	}
	if obj, ok := data.(map[string]any); ok {
		line.Serial, _ = obj["serial"].(string)
		line.RequestID, _ = obj["request_id"].(string)
	}
	return schema.Validate(data)
}

// offsets returns, per partition, where reading starts (the group's committed offset, else the
// first record at or after since, else the start) and where the topic ends now.
func offsets(ctx context.Context, adm *kadm.Client, topic, group string, since time.Time) (from, end map[int32]int64, err error) {
	ends, err := adm.ListEndOffsets(ctx, topic)
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		return nil, nil, fmt.Errorf("listing the offsets of %s: %w", topic, err)
	}
	var starts kadm.ListedOffsets
	if since.IsZero() {
		starts, err = adm.ListStartOffsets(ctx, topic)
	} else {
		starts, err = adm.ListOffsetsAfterMilli(ctx, since.UnixMilli(), topic)
	}
	if err == nil {
		err = starts.Error()
	}
	if err != nil {
		return nil, nil, fmt.Errorf("listing the offsets of %s: %w", topic, err)
	}
	var committed kadm.OffsetResponses
	if group != "" {
		if committed, err = adm.FetchOffsets(ctx, group); err != nil {
			return nil, nil, fmt.Errorf("fetching the offsets of group %s: %w", group, err)
		}
	}
	from, end = map[int32]int64{}, map[int32]int64{}
	ends.Each(func(o kadm.ListedOffset) {
		end[o.Partition] = o.Offset
		start, _ := starts.Lookup(topic, o.Partition)
		from[o.Partition] = start.Offset
		if c, ok := committed.Lookup(topic, o.Partition); ok && c.Err == nil && c.At > start.Offset {
			from[o.Partition] = c.At
		}
	})
	if len(end) == 0 {
		return nil, nil, fmt.Errorf("topic %s does not exist", topic)
	}
	return from, end, nil
}

// pass reads the topic once: from the start (or -since, or the group's committed offsets) to the
// end it had when the pass began, or on and on with -follow.
func pass(ctx context.Context, cfg config, topic string, checker *Checker, out io.Writer) error {
	reset := kgo.NewOffset().AtStart()
	if !cfg.since.IsZero() {
		reset = kgo.NewOffset().AfterMilli(cfg.since.UnixMilli())
	}
	opts := []kgo.Opt{
		kgo.SeedBrokers(strings.Split(cfg.bootstrap, ",")...),
		kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(reset),
	}
	if cfg.group != "" {
		opts = append(opts, kgo.ConsumerGroup(cfg.group), kgo.DisableAutoCommit())
	}
	client, err := kgo.NewClient(opts...)
	if err != nil {
		return err
	}
	defer client.Close()
	next, end, err := offsets(ctx, kadm.NewClient(client), topic, cfg.group, cfg.since)
	if err != nil {
		return err
	}
	caughtUp := func() bool {
		for p, e := range end {
			if next[p] < e {
				return false
			}
		}
		return true
	}
	encoder := json.NewEncoder(out)
	for cfg.follow || !caughtUp() {
		fetches := client.PollFetches(ctx)
		if ctx.Err() != nil {
			if cfg.follow {
				return nil
			}
			return fmt.Errorf("stopped before the end of %s: %w", topic, context.Cause(ctx))
		}
		if err := fetches.Err0(); err != nil {
			return err
		}
		for it := fetches.RecordIter(); !it.Done(); {
			record := it.Next()
			next[record.Partition] = record.Offset + 1
			if err := encoder.Encode(checker.Check(record)); err != nil {
				return err
			}
			if cfg.max > 0 && checker.summary.Records >= cfg.max {
				return commit(ctx, client, cfg.group)
			}
		}
		// Commit after acting on the batch: a crash before this re-delivers, never skips.
		if err := commit(ctx, client, cfg.group); err != nil {
			return err
		}
	}
	return nil
}

func commit(ctx context.Context, client *kgo.Client, group string) error {
	if group == "" {
		return nil
	}
	return client.CommitUncommittedOffsets(ctx)
}

func run(args []string, out io.Writer) (int, error) {
	cfg, err := parseFlags(args)
	if err != nil {
		return 2, err
	}
	schemas, err := loadSchemas(cfg.schemas, typePrefix)
	if err != nil {
		return 2, err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if cfg.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeoutCause(ctx, cfg.timeout, fmt.Errorf("-timeout %s reached", cfg.timeout))
		defer cancel()
	}
	topic := cfg.prefix + "cert"
	checker := &Checker{schemas: schemas, seen: map[string]struct{}{},
		summary: Summary{Topic: topic, ByType: map[string]int{}}}
	for i := 0; i < cfg.passes; i++ {
		if cfg.max > 0 && checker.summary.Records >= cfg.max {
			break
		}
		checker.summary.Passes++
		if err := pass(ctx, cfg, topic, checker, out); err != nil {
			return 2, err
		}
	}
	if err := json.NewEncoder(out).Encode(map[string]Summary{"summary": checker.summary}); err != nil {
		return 2, err
	}
	if checker.summary.Invalid > 0 {
		return 1, fmt.Errorf("%d of %d events broke the contract", checker.summary.Invalid, checker.summary.Records)
	}
	return 0, nil
}

func main() {
	code, err := run(os.Args[1:], os.Stdout)
	switch {
	case errors.Is(err, flag.ErrHelp):
		code = 0
	case err != nil:
		fmt.Fprintln(os.Stderr, "go-consumer:", err)
	}
	os.Exit(code)
}
