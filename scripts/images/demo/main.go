// Demo app for the blue-green release: a tiny HTTP server that says which slot and version
// answered. Built by scripts/images/build.py into image archives that are imported into the local
// containerd (there is no Docker and no registry here); the version is baked in at build time:
//
//	go build -ldflags "-X main.version=2.0.0" .             a normal version
//	go build -ldflags "-X main.neverReady=true" .            health path always 503 (never Ready)
//	go build -ldflags "-X main.failPercent=30" .             answers 500 to 30% of its requests (spread
//	                                                         evenly: 3 of every 10); the health path stays OK
//
// Env: PORT (8080), BLUEGREEN_SLOT (unknown), HEALTH_PATH (/healthz).
// Any path answers 200 "slot=... version=... pod=..."; ?delay=2s (at most 20s) answers that late,
// a request that is in flight across a SIGTERM or a traffic switch (graceful shutdown tests).
// Subcommands: `app check URL` (GET, exit 0 on 2xx; for helm test pods), `app version`.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"sync/atomic"
	"syscall"
	"time"
)

var (
	version     = "dev"
	neverReady  = "false" // -X can only set strings
	failPercent = "0"     // the share of requests (not the health path) answered 500, 0 to 100
)

// failing says whether the n-th request (from 1) is one of the failPercent in every 100 answered
// 500: the n-th fails when n*p/100 passes a whole number, so any run of requests fails at that share.
func failing(n uint64, percent uint64) bool {
	return n*percent/100 > (n-1)*percent/100
}

func env(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

// check GETs url and reports the answer; exit status 0 on 2xx, 1 otherwise.
func check(url string) int {
	client := &http.Client{Timeout: 5 * time.Second}
	resp, err := client.Get(url)
	if err != nil {
		fmt.Fprintf(os.Stderr, "check %s: %v\n", url, err)
		return 1
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	fmt.Printf("%s %s\n%s", url, resp.Status, body)
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return 1
	}
	return 0
}

func main() {
	log.SetFlags(log.Ldate | log.Ltime | log.Lmicroseconds | log.LUTC)
	log.SetOutput(os.Stdout)
	if len(os.Args) > 1 {
		switch os.Args[1] {
		case "check":
			if len(os.Args) != 3 {
				fmt.Fprintln(os.Stderr, "usage: app check URL")
				os.Exit(2)
			}
			os.Exit(check(os.Args[2]))
		case "version":
			fmt.Println(version)
			return
		default:
			fmt.Fprintf(os.Stderr, "usage: app [check URL | version]\n")
			os.Exit(2)
		}
	}

	slot := env("BLUEGREEN_SLOT", "unknown")
	port := env("PORT", "8080")
	healthPath := env("HEALTH_PATH", "/healthz")
	ready := neverReady != "true"
	percent, err := strconv.ParseUint(failPercent, 10, 8)
	if err != nil || percent > 100 {
		log.Fatalf("main.failPercent is %q; allowed: 0 to 100", failPercent)
	}
	var served atomic.Uint64
	host, _ := os.Hostname()

	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Slot", slot)
		w.Header().Set("X-Version", version)
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if r.URL.Path == healthPath {
			if !ready {
				w.WriteHeader(http.StatusServiceUnavailable)
				fmt.Fprintln(w, "not ready (never-ready build)")
				return
			}
			fmt.Fprintln(w, "ok")
			return
		}
		if percent > 0 && failing(served.Add(1), percent) {
			w.WriteHeader(http.StatusInternalServerError)
			fmt.Fprintf(w, "slot=%s version=%s pod=%s failed (failPercent=%d)\n", slot, version, host, percent)
			return
		}
		if d, err := time.ParseDuration(r.URL.Query().Get("delay")); err == nil && d > 0 {
			select {
			case <-time.After(min(d, 20*time.Second)):
			case <-r.Context().Done():
				return
			}
		}
		fmt.Fprintf(w, "slot=%s version=%s pod=%s\n", slot, version, host)
	})

	srv := &http.Server{
		Addr:              ":" + port,
		Handler:           handler,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       120 * time.Second, // longer than the ingress keeps idle connections (Traefik: 90 s): it closes them first
	}

	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	done := make(chan struct{})
	go func() {
		sig := <-stop
		log.Printf("got %v: no new connections; finishing in-flight requests (up to 25s)", sig)
		ctx, cancel := context.WithTimeout(context.Background(), 25*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			log.Printf("shutdown: %v; closing the remaining connections", err)
			srv.Close()
		}
		close(done)
	}()

	log.Printf("demo starting: slot=%s version=%s port=%s health=%s ready=%t failPercent=%d pod=%s",
		slot, version, port, healthPath, ready, percent, host)
	if err := srv.ListenAndServe(); !errors.Is(err, http.ErrServerClosed) {
		log.Printf("serve: %v", err)
		os.Exit(1)
	}
	<-done
	log.Printf("stopped")
}
