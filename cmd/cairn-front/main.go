// Command cairn-front runs the processes of a cairn bundle that face
// clients: a site's ACME front (HTTPS for the ACME name in front of the
// WFE) and the HTTP fronts (a site's CRLs and issuers; the cluster's root
// and root CRL). It links only those two packages, so the processes
// exposed to the Internet carry none of cairn's other code (etcd, the
// controller, provisioning), and each costs a few MiB instead of the full
// cairn binary's tens.
//
//	cairn-front acme-front --config etc/acme-front.json
//	cairn-front http-front --config etc/http-front.json
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/cairn-pki/cairn/internal/acmefront"
	"github.com/cairn-pki/cairn/internal/httpfront"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "cairn-front:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	if len(args) == 0 {
		return fmt.Errorf("usage: cairn-front acme-front|http-front --config FILE")
	}
	fs := flag.NewFlagSet(args[0], flag.ContinueOnError)
	config := fs.String("config", "", "the front's config (etc/acme-front.json or etc/http-front.json of the bundle)")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	if *config == "" {
		return fmt.Errorf("%s: --config is required", args[0])
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	switch args[0] {
	case "acme-front":
		c, err := acmefront.Load(*config)
		if err != nil {
			return err
		}
		return acmefront.Serve(ctx, c, log)
	case "http-front":
		return httpfront.Serve(ctx, *config, log)
	}
	return fmt.Errorf("unknown front %q: acme-front or http-front", args[0])
}
