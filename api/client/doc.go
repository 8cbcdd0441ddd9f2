// Package client is the Go client of the REST API, used by autonomyctl and
// the integration suite. It links neither gin nor the WAL: the JSON shapes
// are package api/wire. It knows two kinds of route (DESIGN §7):
//
//   - every-node routes (health, ha status, wal status/inspect, metrics) are
//     answered by any node about itself: the client asks the first endpoint
//     that answers, in the order given, unless a request names one endpoint;
//   - leader-only routes: the client discovers the leader (the endpoint whose
//     GET /v1/health answers 200) and sends the request there. A follower
//     answers such a route with 307 and the leader's URL in Location and
//     X-Autonomy-Leader; the client follows that itself (Go's http.Client would
//     drop the Authorization header on a redirect to another host).
//
// Transport errors are returned as Go's own *url.Error, so the operator sees
// the familiar text, e.g.
//
//	Get "http://localhost:8080/v1/fleet/summary": dial tcp 127.0.0.1:8080: connect: connection refused
//
// An answer with a status of 400 or above is an *HTTPError carrying the
// server's {"error","message"} body.
//
// Agents that send many events use a Producer (NewProducer): it batches with
// a linger time and bounds, keeps a few requests in flight, retries a batch
// with the same event ids after a lost answer or a leader change (exactly
// once, DESIGN §6 rule 10), and reports each event's Seq:
//
//	p := c.NewProducer(client.ProducerOptions{Linger: 2 * time.Millisecond})
//	pe, err := p.Send(ctx, []byte(`{"kind":"cpu","value":0.5}`))
//	...
//	seq, err := pe.Wait(ctx) // committed: fsynced by a majority
//	p.Close(ctx)
//
// A Stream (OpenStream) sends batches as lines of one long-lived POST
// /v1/telemetry/stream and delivers each line's acknowledgement, in line
// order, while more lines are sent; it does not retry (docs/api.md).
package client
