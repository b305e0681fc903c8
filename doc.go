// Package evq holds the domain types of evq, a durable store-and-forward engine
// for OpenSIPS Event Interface events: Event, Param, Value, Subscription, the
// parsed Socket, and Transport, the one interface every destination meets.
//
// This package does no I/O. The durable log lives in package queue, the
// delivery engine in package delivery, and each wire protocol in its own
// package under transports.
package evq
