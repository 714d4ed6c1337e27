// Pause program for Kubernetes pod sandboxes (the image containerd's CRI plugin runs as each pod's
// first process), built by scripts/images/build.py into bluegreen.local/pause:3.10 and imported
// into the local containerd: there is no registry here to pull registry.k8s.io/pause from.
// Like the real pause: sleeps until SIGTERM/SIGINT (exit 0) and, as PID 1 of a shared PID
// namespace, reaps orphaned children on SIGCHLD.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func reap() {
	for {
		var ws syscall.WaitStatus
		pid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil)
		if pid <= 0 || err != nil {
			return
		}
	}
}

func main() {
	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGCHLD)
	for sig := range sigs {
		if sig == syscall.SIGCHLD {
			reap()
			continue
		}
		os.Exit(0)
	}
}
