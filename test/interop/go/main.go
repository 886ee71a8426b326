// Command interop-go is a Flowmetal function worker and client written only against PROTOCOL.md, with the
// official NATS Go client (github.com/nats-io/nats.go and its jetstream package).
//
//	interop-go worker <nats-url> [prefix]      serves the function interop.go.sum (§5)
//	interop-go client <nats-url> <key> [prefix] sends events, asks, reads state (§3, §6, §9); prints one JSON report
//
// Both print JSON on stdout, one object per line.
package main

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"
)

var outMu sync.Mutex

// logLine prints one JSON object on stdout.
func logLine(event string, fields map[string]any) {
	m := map[string]any{"event": event, "t": float64(time.Now().UnixNano()) / 1e9}
	for k, v := range fields {
		m[k] = v
	}
	b, err := json.Marshal(m)
	if err != nil {
		b, _ = json.Marshal(map[string]any{"event": "log-error", "error": err.Error()})
	}
	outMu.Lock()
	defer outMu.Unlock()
	os.Stdout.Write(append(b, '\n'))
}

// streamName is the stream name for a subject prefix (PROTOCOL.md preamble: upper-cased, "-" → "_").
func streamName(prefix, suffix string) string {
	return strings.ReplaceAll(strings.ToUpper(prefix), "-", "_") + "_" + suffix
}

func main() {
	if len(os.Args) < 3 {
		fmt.Fprintln(os.Stderr, "usage: interop-go worker <nats-url> [prefix] | interop-go client <nats-url> <key> [prefix]")
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "worker":
		prefix := "fm"
		if len(os.Args) > 3 {
			prefix = os.Args[3]
		}
		err = runWorker(os.Args[2], prefix)
	case "client":
		if len(os.Args) < 4 {
			fmt.Fprintln(os.Stderr, "usage: interop-go client <nats-url> <key> [prefix]")
			os.Exit(2)
		}
		prefix := "fm"
		if len(os.Args) > 4 {
			prefix = os.Args[4]
		}
		err = runClient(os.Args[2], os.Args[3], prefix)
	default:
		err = fmt.Errorf("unknown command %q", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "interop-go:", err)
		os.Exit(1)
	}
}
