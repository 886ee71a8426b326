package main

// The client: PROTOCOL.md §3 (sending events with JetStream, JSON and CBOR), §6 (state notices) and §9 (the API).
// It drives the actor ledger/<key> and the pipeline interop/<key>, then prints one JSON report for the test.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/fxamacker/cbor/v2"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// apiReply is §9's `{ ok, result }` / `{ ok, error }`.
type apiReply struct {
	OK     bool            `json:"ok"`
	Result json.RawMessage `json:"result,omitempty"`
	Error  *wireError      `json:"error,omitempty"`
}

type fmClient struct {
	nc     *nats.Conn
	js     jetstream.JetStream
	prefix string
}

func (c *fmClient) api(verb string, req any, timeout time.Duration) (apiReply, error) {
	data, err := json.Marshal(req)
	if err != nil {
		return apiReply{}, err
	}
	m, err := c.nc.Request(c.prefix+".api."+verb, data, timeout)
	if err != nil {
		return apiReply{}, fmt.Errorf("%s: %w", verb, err)
	}
	var r apiReply
	if err := json.Unmarshal(m.Data, &r); err != nil {
		return apiReply{}, fmt.Errorf("%s reply: %w", verb, err)
	}
	return r, nil
}

// must returns the result of a successful API call, decoded into a generic value.
func (c *fmClient) must(verb string, req any, timeout time.Duration) (map[string]any, error) {
	r, err := c.api(verb, req, timeout)
	if err != nil {
		return nil, err
	}
	if !r.OK {
		return nil, fmt.Errorf("%s: %s: %s", verb, r.Error.Code, r.Error.Message)
	}
	var out map[string]any
	if err := json.Unmarshal(r.Result, &out); err != nil {
		return nil, err
	}
	return out, nil
}

// publish sends one event to fm.in.<program>.<key> with JetStream (§3) and returns the PubAck.
func (c *fmClient) publish(program, key string, body []byte, contentType, msgID string) (*jetstream.PubAck, error) {
	msg := &nats.Msg{Subject: fmt.Sprintf("%s.in.%s.%s", c.prefix, program, key), Data: body, Header: nats.Header{}}
	msg.Header.Set("Content-Type", contentType)
	msg.Header.Set("Nats-Msg-Id", msgID)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return c.js.PublishMsg(ctx, msg)
}

func runClient(url, key, prefix string) error {
	nc, err := nats.Connect(url, nats.Name("interop-go-client"))
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	c := &fmClient{nc: nc, js: js, prefix: prefix}
	report := map[string]any{"key": key}
	actor := "ledger/" + key

	// §6: subscribe to the actor's state notices before sending, so none slips past.
	notices := make(chan map[string]any, 64)
	sub, err := nc.Subscribe(fmt.Sprintf("%s.state.ledger.%s", prefix, key), func(m *nats.Msg) {
		var n map[string]any
		if json.Unmarshal(m.Data, &n) == nil {
			notices <- n
		}
	})
	if err != nil {
		return err
	}
	defer sub.Unsubscribe()
	if err := nc.Flush(); err != nil {
		return err
	}

	// §3: a JSON event, then the same Nats-Msg-Id again (stored once), then a CBOR event.
	jsonEvent, _ := json.Marshal(map[string]any{"type": "ADD", "amount": 7, "note": "go-json"})
	ack1, err := c.publish("ledger", key, jsonEvent, "application/json", key+"-json-1")
	if err != nil {
		return fmt.Errorf("json publish: %w", err)
	}
	ack1again, err := c.publish("ledger", key, jsonEvent, "application/json", key+"-json-1")
	if err != nil {
		return fmt.Errorf("json publish again: %w", err)
	}
	em, err := cbor.EncOptions{Time: cbor.TimeRFC3339Nano, TimeTag: cbor.EncTagRequired}.EncMode()
	if err != nil {
		return err
	}
	cborEvent, err := em.Marshal(map[string]any{
		"type":   "ADD",
		"amount": 0.25,
		"note":   "go-cbor",
		"tags":   []string{"x", "y"},
		"nested": map[string]any{"deep": map[string]any{"n": -3, "ok": false, "nothing": nil}},
		"when":   time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), // tag 0: read as an ISO string
	})
	if err != nil {
		return err
	}
	ack2, err := c.publish("ledger", key, cborEvent, "application/cbor", key+"-cbor-1")
	if err != nil {
		return fmt.Errorf("cbor publish: %w", err)
	}
	report["pubAcks"] = []map[string]any{
		{"stream": ack1.Stream, "seq": ack1.Sequence, "duplicate": ack1.Duplicate},
		{"stream": ack1again.Stream, "seq": ack1again.Sequence, "duplicate": ack1again.Duplicate},
		{"stream": ack2.Stream, "seq": ack2.Sequence, "duplicate": ack2.Duplicate},
	}

	// Wait for the notices of the two steps that took them (matched by inbox seq).
	want := map[uint64]bool{ack1.Sequence: true, ack2.Sequence: true}
	var seen []map[string]any
	timeout := time.After(15 * time.Second)
	for len(want) > 0 {
		select {
		case n := <-notices:
			seq, _ := n["seq"].(float64)
			if want[uint64(seq)] {
				delete(want, uint64(seq))
				seen = append(seen, n)
			}
		case <-timeout:
			return errors.New("no state notice for the published events within 15 s")
		}
	}
	report["notices"] = seen

	// §9 ask: an event, one the state does not accept, then the first again with its msgId (a retry: stored
	// once, answered with the step that took it). The retry waits at most 3 s.
	askEvent := map[string]any{"type": "ADD", "amount": 100, "note": "go-ask"}
	ask1, err := c.api("ask", map[string]any{"actor": actor, "event": askEvent, "msgId": key + "-ask-1"}, 15*time.Second)
	if err != nil {
		return err
	}
	askBad, err := c.api("ask", map[string]any{"actor": actor, "event": map[string]any{"type": "NOPE"}}, 15*time.Second)
	if err != nil {
		return err
	}
	started := time.Now()
	ask1again, err := c.api("ask", map[string]any{"actor": actor, "event": askEvent, "msgId": key + "-ask-1", "timeoutMs": 3000}, 15*time.Second)
	if err != nil {
		return err
	}
	report["ask"] = ask1
	report["askNotAccepted"] = askBad
	report["askAgain"] = ask1again
	report["askAgainMs"] = float64(time.Since(started)) / float64(time.Millisecond)

	// §9 get, history page by page (limit 2, `next` passed back as `after` until a page has no `next`).
	got, err := c.must("get", map[string]any{"actor": actor}, 10*time.Second)
	if err != nil {
		return err
	}
	report["get"] = got
	var pages []map[string]any
	var after any
	for len(pages) < 20 {
		req := map[string]any{"actor": actor, "limit": 2}
		if after != nil {
			req["after"] = after
		}
		r, err := c.api("history", req, 10*time.Second)
		if err != nil {
			return err
		}
		page := map[string]any{"ok": r.OK}
		if !r.OK {
			page["error"] = r.Error
			pages = append(pages, page)
			break
		}
		var result map[string]any
		if err := json.Unmarshal(r.Result, &result); err != nil {
			return err
		}
		page["result"] = result
		pages = append(pages, page)
		next, ok := result["next"]
		if !ok {
			break
		}
		after = next
	}
	report["historyPages"] = pages
	unknown, err := c.api("get", map[string]any{"actor": "ledger/" + key + "-nobody"}, 10*time.Second)
	if err != nil {
		return err
	}
	report["unknownActor"] = unknown

	// The pipeline: a Go client starts an actor that calls the Python and the Go function workers.
	pipe := "interop/" + key
	run, err := c.api("ask", map[string]any{"actor": pipe, "event": map[string]any{"type": "RUN", "text": "from go", "numbers": []float64{1.5, 2.5, 3}}, "msgId": key + "-run"}, 15*time.Second)
	if err != nil {
		return err
	}
	report["pipelineAsk"] = run
	deadline := time.Now().Add(20 * time.Second)
	for {
		v, err := c.must("get", map[string]any{"actor": pipe}, 10*time.Second)
		if err != nil {
			return err
		}
		if v["status"] == "done" || time.Now().After(deadline) {
			report["pipeline"] = v
			break
		}
		time.Sleep(50 * time.Millisecond)
	}

	b, err := json.Marshal(report)
	if err != nil {
		return err
	}
	outMu.Lock()
	defer outMu.Unlock()
	_, err = fmt.Printf("%s\n", b)
	return err
}
