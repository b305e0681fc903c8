// Package stream is the JSON-RPC 2.0 over TCP transport of OpenSIPS's
// event_stream and event_jsonrpc modules: sockets tcp:host:port[/method] and
// jsonrpc:host:port[/method].
//
// Events are written as JSON-RPC objects back-to-back on one persistent
// connection, byte for byte as OpenSIPS 4.1 writes them, except that unnamed
// params are a JSON array (as OpenSIPS documents) rather than OpenSIPS's
// {"":v} objects. In reliable mode each event is a request whose id is the
// event's seq, and it counts as delivered only when a reply with that id and
// no error member arrives within the timeout. Up to MaxInflight requests are
// pipelined; replies may come in any order and are matched by id.
//
// The encoder appends bytes by hand into a reused buffer and replies are read
// by a small scanner: encoding/json on this path costs about half the
// throughput. Both are fuzzed against encoding/json.
package stream
