package bench

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/heraldhq/herald/clients/signing"
)

// BaselineConfig configures a raw baseline run: a plain HTTP client that
// signs and POSTs events straight to a sink, with nothing in between.
type BaselineConfig struct {
	URL    string // the sink
	Secret string // "whsec_..." secret the sink verifies with
	// URLs and Secrets, if set, are several sinks instead: event n goes
	// to URLs[n % len(URLs)], signed with Secrets[n % len(URLs)].
	URLs    []string
	Secrets []string
	Events  int    // how many events to send
	Workers int    // concurrent senders, each with its own keep-alive connection
	Prefix  string // event ids are Prefix + sequence number
	Source  string // the events' source (default "/herald/bench")
	Timeout time.Duration
}

// BaselineRun is what a baseline run did.
type BaselineRun struct {
	Sent    []Sent          // every event, Accepted when the sink answered 2xx
	Latency []time.Duration // per request, unsorted
	Errors  int             // requests that failed or were not answered 2xx
	Start   time.Time
	End     time.Time
}

// Baseline sends cfg.Events signed 1 KiB JSON events to cfg.URL from
// cfg.Workers goroutines, one request per event, in CloudEvents binary mode
// with Standard Webhooks headers, as Herald would. It returns when every
// request is answered or ctx is done.
func Baseline(ctx context.Context, cfg BaselineConfig) (*BaselineRun, error) {
	urls, secrets := cfg.URLs, cfg.Secrets
	if len(urls) == 0 {
		urls, secrets = []string{cfg.URL}, []string{cfg.Secret}
	}
	signers := make([]*signing.Signer, len(urls))
	for i, sec := range secrets {
		var err error
		if signers[i], err = signing.NewSigner(sec); err != nil {
			return nil, err
		}
	}
	workers := max(cfg.Workers, 1)
	timeout := cfg.Timeout
	if timeout <= 0 {
		timeout = 30 * time.Second
	}
	tr := &http.Transport{
		DialContext:         (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConnsPerHost: workers,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
	}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr, Timeout: timeout}
	source := cfg.Source
	if source == "" {
		source = eventSource
	}

	run := &BaselineRun{Sent: make([]Sent, cfg.Events)}
	lat := make([][]time.Duration, workers)
	var errs atomic.Int64
	var next atomic.Int64
	var wg sync.WaitGroup
	run.Start = time.Now()
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				seq := int(next.Add(1) - 1)
				if seq >= cfg.Events {
					return
				}
				id := cfg.Prefix + strconv.Itoa(seq)
				start := time.Now()
				i := seq % len(urls)
				ok := post(ctx, hc, signers[i], urls[i], source, id, eventData(seq))
				lat[w] = append(lat[w], time.Since(start))
				run.Sent[seq] = Sent{ID: id, At: start, Accepted: ok}
				if !ok {
					errs.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	run.End = time.Now()
	run.Errors = int(errs.Load())
	for _, l := range lat {
		run.Latency = append(run.Latency, l...)
	}
	// Drop the events never sent because ctx ended.
	n := 0
	for _, s := range run.Sent {
		if s.ID != "" {
			run.Sent[n] = s
			n++
		}
	}
	run.Sent = run.Sent[:n]
	return run, ctx.Err()
}

// post sends one signed event and reports whether the sink answered 2xx.
func post(ctx context.Context, hc *http.Client, signer *signing.Signer, url, source, id, data string) bool {
	body := []byte(data)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return false
	}
	msgID := "msg_" + id
	ts := time.Now()
	h := req.Header
	h["Content-Type"] = []string{"application/json"}
	h["Ce-Specversion"] = []string{"1.0"}
	h["Ce-Id"] = []string{id}
	h["Ce-Source"] = []string{source}
	h["Ce-Type"] = []string{eventType}
	h["Webhook-Id"] = []string{msgID}
	h["Webhook-Timestamp"] = []string{strconv.FormatInt(ts.Unix(), 10)}
	h["Webhook-Signature"] = []string{signer.Sign(msgID, ts, body)}
	resp, err := hc.Do(req)
	if err != nil {
		return false
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	return resp.StatusCode/100 == 2
}

// Event shape shared by the load generator and the baseline.
const (
	eventSource = "/herald/bench"
	eventType   = "dev.herald.bench.v1"
	eventSize   = 1024
)

// eventData returns the JSON data of event seq: exactly eventSize bytes.
func eventData(seq int) string {
	head := fmt.Sprintf(`{"seq":%d,"pad":"`, seq)
	const tail = `"}`
	pad := eventSize - len(head) - len(tail)
	if pad < 0 {
		pad = 0
	}
	return head + padding[:pad] + tail
}

var padding = string(bytes.Repeat([]byte("x"), eventSize))
