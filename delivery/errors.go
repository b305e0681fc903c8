package delivery

import "errors"

// ErrClosed is returned by calls on a closed Engine.
var ErrClosed = errors.New("engine is shutting down")

// ErrBadStart means a subscription's start position could not be parsed.
var ErrBadStart = errors.New("bad start")

// ErrNotRunning means the subscription has no worker (it has expired), so
// its dead letters cannot be redriven until it is subscribed again.
var ErrNotRunning = errors.New("subscription is not running")
