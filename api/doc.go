// Package api is evq's HTTP interface: raising events, managing
// subscriptions, replay and dead letters under /v1, an OpenSIPS-compatible
// MI endpoint at /mi, Prometheus metrics at /metrics and /healthz.
//
// A raise is answered only after its events are fsynced. Errors are JSON
// objects {"error": "..."} that name the bad input; storage full is 507 and
// shutting down is 503, so raisers know to retry.
package api
