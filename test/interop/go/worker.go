package main

// The function worker: PROTOCOL.md §5, nothing else.
//
// It serves interop.go.sum: input {"numbers": [..], "mode": ".."}, output {"sum": n, "attempt": n, "by": "go"}.
// The mode makes it fail on purpose: "flaky" fails retryably on attempt 1, "terminal" fails terminally,
// "always" fails retryably on every attempt (the worker gives up after retry.maxAttempts).

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

const sumFunction = "interop.go.sum"

// ackWait must be longer than a call's timeoutMs (§5: nodes use timeoutMs + 30 s). The consumer exists before
// any call is seen, so this worker supports calls with timeoutMs up to 30 s.
const ackWait = 60 * time.Second

type retryPolicy struct {
	MaxAttempts      int     `json:"maxAttempts"`
	InitialBackoffMs float64 `json:"initialBackoffMs"`
	Multiplier       float64 `json:"multiplier"`
	MaxBackoffMs     float64 `json:"maxBackoffMs"`
}

type callMessage struct {
	CallID    string          `json:"callId"`
	Fn        string          `json:"fn"`
	Input     json.RawMessage `json:"input"`
	Actor     string          `json:"actor"`
	ReplyTo   string          `json:"replyTo"`
	Retry     retryPolicy     `json:"retry"`
	TimeoutMs int64           `json:"timeoutMs"`
}

type wireError struct {
	Code      string         `json:"code"`
	Message   string         `json:"message"`
	Retryable bool           `json:"retryable"`
	Details   map[string]any `json:"details,omitempty"`
}

// resultBody is either {callId, output} or {callId, error}.
type resultBody struct {
	CallID string
	Output any
	Error  *wireError
}

func (r resultBody) MarshalJSON() ([]byte, error) {
	if r.Error != nil {
		return json.Marshal(map[string]any{"callId": r.CallID, "error": r.Error})
	}
	return json.Marshal(map[string]any{"callId": r.CallID, "output": r.Output})
}

// terminalError is a failure the function knows is final.
type terminalError struct {
	msg     string
	details map[string]any
}

func (e *terminalError) Error() string { return e.msg }

type sumInput struct {
	Numbers []float64 `json:"numbers"`
	Mode    string    `json:"mode"`
}

// sum is the function. callID is the idempotency key for outside changes (there are none here).
func sum(ctx context.Context, raw json.RawMessage, attempt int, callID string) (any, error) {
	var in sumInput
	if err := json.Unmarshal(raw, &in); err != nil {
		return nil, &terminalError{msg: "input needs numbers: " + err.Error()}
	}
	switch {
	case in.Mode == "terminal":
		return nil, &terminalError{msg: fmt.Sprintf("go refuses to sum %d numbers", len(in.Numbers)), details: map[string]any{"count": len(in.Numbers), "worker": "go"}}
	case in.Mode == "always":
		return nil, fmt.Errorf("go transient failure on attempt %d", attempt)
	case in.Mode == "flaky" && attempt == 1:
		return nil, errors.New("go transient failure on attempt 1")
	}
	total := 0.0
	for _, n := range in.Numbers {
		total += n
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return map[string]any{"sum": total, "attempt": attempt, "by": "go"}, nil
}

// backoff is §5 step 4: min(maxBackoffMs, initialBackoffMs × multiplier^(attempt−1)), ±20 % jitter.
func backoff(p retryPolicy, attempt int) time.Duration {
	base := math.Min(p.MaxBackoffMs, p.InitialBackoffMs*math.Pow(p.Multiplier, float64(attempt-1)))
	return time.Duration(base * (0.8 + 0.4*rand.Float64()) * float64(time.Millisecond))
}

type worker struct {
	prefix  string
	js      jetstream.JetStream
	mu      sync.Mutex
	running map[string]context.CancelFunc
	wg      sync.WaitGroup
}

func runWorker(url, prefix string) error {
	nc, err := nats.Connect(url, nats.Name("interop-go-worker"), nats.MaxReconnects(-1))
	if err != nil {
		return err
	}
	defer nc.Drain()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	w := &worker{prefix: prefix, js: js, running: map[string]context.CancelFunc{}}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()

	// §5 Consumer: one durable pull consumer per function, created if it does not exist.
	stream := streamName(prefix, "FX")
	name := "fn-" + strings.ReplaceAll(sumFunction, ".", "_")
	cfg := jetstream.ConsumerConfig{
		Durable:       name,
		FilterSubject: prefix + ".fx.call." + sumFunction,
		AckPolicy:     jetstream.AckExplicitPolicy,
		MaxDeliver:    -1,
		AckWait:       ackWait,
	}
	var cons jetstream.Consumer
	deadline := time.Now().Add(30 * time.Second)
	for {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		cons, err = js.CreateConsumer(cctx, stream, cfg)
		if errors.Is(err, jetstream.ErrConsumerExists) {
			cons, err = js.Consumer(cctx, stream, name)
		}
		cancel()
		// The stream is made by the nodes; wait for the first one.
		if errors.Is(err, jetstream.ErrStreamNotFound) && time.Now().Before(deadline) {
			time.Sleep(200 * time.Millisecond)
			continue
		}
		if err != nil {
			return fmt.Errorf("consumer %s on %s: %w", name, stream, err)
		}
		break
	}

	// Best-effort cancel notices for running calls.
	if _, err := nc.Subscribe(prefix+".fx.cancel."+sumFunction, func(m *nats.Msg) {
		var n struct {
			CallID string `json:"callId"`
		}
		if json.Unmarshal(m.Data, &n) != nil {
			return
		}
		logLine("cancel-notice", map[string]any{"callId": n.CallID})
		w.mu.Lock()
		if c := w.running[n.CallID]; c != nil {
			c()
		}
		w.mu.Unlock()
	}); err != nil {
		return err
	}

	cc, err := cons.Consume(func(m jetstream.Msg) {
		w.wg.Add(1)
		go func() {
			defer w.wg.Done()
			w.handle(m)
		}()
	})
	if err != nil {
		return err
	}
	if err := nc.Flush(); err != nil {
		return err
	}
	logLine("ready", map[string]any{"function": sumFunction, "consumer": name, "stream": stream})
	<-ctx.Done()
	cc.Drain()
	<-cc.Closed()
	w.wg.Wait()
	logLine("stopped", nil)
	return nil
}

func (w *worker) reply(call *callMessage, body resultBody) (*jetstream.PubAck, error) {
	data, err := json.Marshal(body)
	if err != nil {
		return nil, err
	}
	msg := &nats.Msg{Subject: call.ReplyTo, Data: data, Header: nats.Header{}}
	msg.Header.Set("Fm-Kind", "result")
	msg.Header.Set("Fm-Call", call.CallID)
	msg.Header.Set("Content-Type", "application/json")
	msg.Header.Set("Nats-Msg-Id", call.CallID+".result")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return w.js.PublishMsg(ctx, msg)
}

func (w *worker) handle(m jetstream.Msg) {
	md, err := m.Metadata()
	if err != nil {
		logLine("malformed", map[string]any{"error": err.Error()})
		_ = m.Term()
		return
	}
	attempt := int(md.NumDelivered)
	var call callMessage
	err = json.Unmarshal(m.Data(), &call)
	// §5: answer only into the calling actor's inbox, <prefix>.in.<program>.<key>.
	program, key, _ := strings.Cut(call.Actor, "/")
	if err != nil || call.CallID == "" || program == "" || key == "" || call.ReplyTo != w.prefix+".in."+program+"."+key {
		logLine("malformed", map[string]any{"seq": md.Sequence.Stream})
		_ = m.Term()
		return
	}
	logLine("call", map[string]any{"callId": call.CallID, "fn": call.Fn, "actor": call.Actor, "attempt": attempt, "input": call.Input})

	answer := func(body resultBody, fields map[string]any) {
		ack, err := w.reply(&call, body)
		if err != nil {
			// Not answered: leave the message unacked so it comes back.
			logLine("reply-failed", map[string]any{"callId": call.CallID, "error": err.Error()})
			return
		}
		_ = m.Ack()
		fields["callId"] = call.CallID
		fields["attempt"] = attempt
		fields["duplicate"] = ack.Duplicate
		logLine("reply", fields)
	}

	if attempt > call.Retry.MaxAttempts {
		// §5 step 1: earlier deliveries died without answering; they count as attempts.
		answer(resultBody{CallID: call.CallID, Error: &wireError{Code: "FM_ERR_FUNCTION_FAILED", Message: fmt.Sprintf("no attempt of %d finished", call.Retry.MaxAttempts)}},
			map[string]any{"ok": false, "code": "FM_ERR_FUNCTION_FAILED"})
		return
	}

	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(call.TimeoutMs)*time.Millisecond)
	defer cancel()
	cancelled := false
	w.mu.Lock()
	w.running[call.CallID] = func() { cancelled = true; cancel() }
	w.mu.Unlock()
	defer func() {
		w.mu.Lock()
		delete(w.running, call.CallID)
		w.mu.Unlock()
	}()

	// In-progress acks while the call runs, more often than ack_wait.
	beat := time.NewTicker(ackWait / 3)
	defer beat.Stop()
	type outcome struct {
		out any
		err error
	}
	done := make(chan outcome, 1)
	go func() {
		out, err := sum(ctx, call.Input, attempt, call.CallID)
		done <- outcome{out, err}
	}()
	var res outcome
wait:
	for {
		select {
		case res = <-done:
			break wait
		case <-ctx.Done():
			res = outcome{err: ctx.Err()}
			break wait
		case <-beat.C:
			_ = m.InProgress()
		}
	}

	w.mu.Lock()
	wasCancelled := cancelled
	w.mu.Unlock()
	if wasCancelled {
		// The actor left the invoking state and drops any result: nothing to answer.
		logLine("cancelled", map[string]any{"callId": call.CallID, "attempt": attempt})
		_ = m.Ack()
		return
	}
	if res.err == nil {
		answer(resultBody{CallID: call.CallID, Output: res.out}, map[string]any{"ok": true, "output": res.out})
		return
	}

	var werr wireError
	var term *terminalError
	switch {
	case errors.As(res.err, &term):
		werr = wireError{Code: "FM_ERR_FUNCTION_FAILED", Message: term.msg, Retryable: false, Details: term.details}
	case errors.Is(res.err, context.DeadlineExceeded):
		werr = wireError{Code: "FM_ERR_FUNCTION_TIMEOUT", Message: fmt.Sprintf("attempt %d took longer than %d ms", attempt, call.TimeoutMs), Retryable: true}
	default:
		werr = wireError{Code: "FM_ERR_FUNCTION_FAILED", Message: res.err.Error(), Retryable: true}
	}
	if werr.Retryable && attempt < call.Retry.MaxAttempts {
		d := backoff(call.Retry, attempt)
		if err := m.NakWithDelay(d); err != nil {
			fmt.Fprintln(os.Stderr, "nak:", err)
		}
		logLine("nak", map[string]any{"callId": call.CallID, "attempt": attempt, "delayMs": float64(d) / float64(time.Millisecond), "error": werr})
		return
	}
	werr.Retryable = false
	answer(resultBody{CallID: call.CallID, Error: &werr}, map[string]any{"ok": false, "code": werr.Code, "message": werr.Message})
}
