package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/aftercare/aftercare/config"
	"github.com/aftercare/aftercare/redisstore"
)

const rekeyUsage = `Usage: aftercare rekey

Brings the Redis named by REDIS_URL under the first key of AFTERCARE_DATA_KEY:
seals every booking record and inbox item again under it, and renames every
number's opt-out entry and booking index to its digest under it (numbers are
named by HMAC-SHA256 under a key derived from the data key). Opt-out entries
written under plain SHA-256 by earlier versions are renamed when a booking or
an inbox item still holds their number; the others stay, and are honoured.

Rotate a data key in three steps:
  1. AFTERCARE_DATA_KEY=new,old   restart the services (the new key writes,
                                  both read: STOP keeps working throughout)
  2. aftercare rekey              with the same settings
  3. AFTERCARE_DATA_KEY=new       restart again; the old key can be destroyed

It can run while the service runs, and run again.
`

func rekeyCmd(ctx context.Context, args []string, lookup func(string) (string, bool), stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("rekey", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, rekeyUsage) }
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		fs.Usage()
		return fmt.Errorf("rekey takes no arguments; got %q", fs.Args())
	}
	cfg, err := config.Load(lookup)
	if err != nil {
		return fmt.Errorf("configuration:\n%w", err)
	}
	if cfg.RedisURL == "" {
		return errors.New("REDIS_URL is not set: rekey works on the Redis the service uses; set REDIS_URL to it")
	}
	if len(cfg.DataKeys) == 0 {
		return errors.New("AFTERCARE_DATA_KEY is not set: rekey brings the data under its first key; set it as the service has it")
	}
	target, err := redisstore.ParseURL(cfg.RedisURL)
	if err != nil {
		return fmt.Errorf("REDIS_URL: %w", err)
	}
	rdb := target.Client(0)
	defer rdb.Close()
	store, err := redisstore.NewSealed(rdb, cfg.DataKeys)
	if err != nil {
		return fmt.Errorf("AFTERCARE_DATA_KEY: %w", err)
	}
	last := time.Now()
	rep, err := store.Rekey(ctx, func(done, total int) {
		if done == total || time.Since(last) >= time.Second {
			last = time.Now()
			fmt.Fprintf(stderr, "rekey: %d of %d records\n", done, total)
		}
	})
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%d bookings and %d inbox items read, %d sealed again; %d opt-outs and %d number indexes renamed\n",
		rep.Bookings, rep.Items, rep.Resealed, rep.OptOuts, rep.Indexes)
	if rep.Unnamed > 0 {
		fmt.Fprintf(stdout, "%d opt-outs stay under plain SHA-256 names: no record holds their number; they are still honoured\n", rep.Unnamed)
	}
	if rep.Unreadable > 0 {
		return fmt.Errorf("%d opt-outs are sealed under a data key that is not in AFTERCARE_DATA_KEY, and are not honoured: add that key back (after the first) and run rekey again", rep.Unreadable)
	}
	return nil
}
