package evq

import (
	"fmt"
	"net"
	"strconv"
	"strings"
)

// The socket syntaxes evq understands, as shown in error messages.
var socketSyntax = map[string]string{
	"tcp":       "tcp:host:port[/method]",
	"jsonrpc":   "jsonrpc:host:port[/method]",
	"xmlrpc":    "xmlrpc:host:port:method",
	"udp":       "udp:host:port",
	"unix":      "unix:/path/to/socket",
	"flatstore": "flatstore:/path/to/file",
	"rabbitmq":  "rabbitmq:[user[:pass]@]host[:port]/[exchange?]routing_key",
	"virtual":   "virtual:POLICY socket1 socket2 ... (POLICY is PARALLEL, FAILOVER or ROUND-ROBIN)",
}

var schemeOrder = []string{"tcp", "jsonrpc", "xmlrpc", "udp", "unix", "flatstore", "rabbitmq", "virtual"}

// Virtual group policies.
const (
	PolicyParallel   = "PARALLEL"
	PolicyFailover   = "FAILOVER"
	PolicyRoundRobin = "ROUND-ROBIN"
)

// Socket is a parsed OpenSIPS socket string: where and how to deliver.
type Socket struct {
	Scheme string // tcp, jsonrpc, xmlrpc, udp, unix, flatstore, rabbitmq or virtual

	Host string // tcp, jsonrpc, xmlrpc, udp, rabbitmq
	Port int    // tcp, jsonrpc, xmlrpc, udp, rabbitmq (5672 when omitted)

	Method string // tcp/jsonrpc: the optional /method; xmlrpc: the method
	Path   string // unix, flatstore

	User, Password       string // rabbitmq (guest/guest when omitted)
	Exchange, RoutingKey string // rabbitmq; Exchange "" is the default exchange

	Policy  string   // virtual: PARALLEL, FAILOVER or ROUND-ROBIN
	Members []Socket // virtual: the group's members, in order

	raw string
}

// String returns the socket as it was written (trimmed).
func (s Socket) String() string { return s.raw }

// Addr returns host:port for network sockets.
func (s Socket) Addr() string { return net.JoinHostPort(s.Host, strconv.Itoa(s.Port)) }

// SocketSyntax lists every accepted socket syntax on one line.
func SocketSyntax() string {
	all := make([]string, len(schemeOrder))
	for i, k := range schemeOrder {
		all[i] = socketSyntax[k]
	}
	return strings.Join(all, " | ")
}

// ParseSocket parses an OpenSIPS-style socket string. Errors quote the input
// and show the expected syntax.
func ParseSocket(s string) (Socket, error) {
	s = strings.TrimSpace(s)
	scheme, rest, ok := strings.Cut(s, ":")
	if !ok || scheme == "" {
		return Socket{}, fmt.Errorf("%w %q: no scheme; expected one of %s", ErrInvalidSocket, s, SocketSyntax())
	}
	scheme = strings.ToLower(scheme)
	syntax, known := socketSyntax[scheme]
	if !known {
		return Socket{}, fmt.Errorf("%w %q: unknown scheme %q; expected one of %s", ErrInvalidSocket, s, scheme, SocketSyntax())
	}
	sock, err := parseScheme(scheme, rest)
	if err != nil {
		return Socket{}, fmt.Errorf("%w %q: %s; expected %s", ErrInvalidSocket, s, err.Error(), syntax)
	}
	sock.Scheme = scheme
	sock.raw = s
	return sock, nil
}

func parseScheme(scheme, rest string) (Socket, error) {
	var sock Socket
	var err error
	switch scheme {
	case "tcp", "jsonrpc":
		hostport, method, _ := strings.Cut(rest, "/")
		sock.Host, sock.Port, err = splitHostPort(hostport, 0)
		sock.Method = method
	case "xmlrpc":
		i := strings.LastIndexByte(rest, ':')
		if i < 0 {
			return sock, fmt.Errorf("missing method")
		}
		sock.Method = rest[i+1:]
		if sock.Method == "" {
			return sock, fmt.Errorf("empty method")
		}
		sock.Host, sock.Port, err = splitHostPort(rest[:i], 0)
	case "udp":
		sock.Host, sock.Port, err = splitHostPort(rest, 0)
	case "unix", "flatstore":
		if rest == "" {
			return sock, fmt.Errorf("empty path")
		}
		sock.Path = rest
	case "rabbitmq":
		err = parseRabbitMQ(&sock, rest)
	case "virtual":
		err = parseVirtual(&sock, rest)
	}
	return sock, err
}

// splitHostPort splits host:port; defPort is used when the port is omitted,
// and 0 means the port is required.
func splitHostPort(hp string, defPort int) (string, int, error) {
	if hp == "" {
		return "", 0, fmt.Errorf("missing host")
	}
	host, port, err := net.SplitHostPort(hp)
	if err != nil {
		if defPort == 0 {
			return "", 0, fmt.Errorf("missing port")
		}
		host, port = strings.Trim(hp, "[]"), strconv.Itoa(defPort)
	}
	if host == "" {
		return "", 0, fmt.Errorf("missing host")
	}
	if strings.ContainsAny(host, " /\t") {
		return "", 0, fmt.Errorf("bad host %q", host)
	}
	n, err := strconv.Atoi(port)
	if err != nil || n < 1 || n > 65535 {
		return "", 0, fmt.Errorf("bad port %q (want 1-65535)", port)
	}
	return host, n, nil
}

func parseRabbitMQ(sock *Socket, rest string) error {
	sock.User, sock.Password = "guest", "guest"
	if at := strings.LastIndexByte(rest, '@'); at >= 0 {
		userinfo := rest[:at]
		rest = rest[at+1:]
		user, pass, hasPass := strings.Cut(userinfo, ":")
		if user == "" {
			return fmt.Errorf("empty user")
		}
		sock.User = user
		if hasPass {
			sock.Password = pass
		}
	}
	hostport, route, ok := strings.Cut(rest, "/")
	if !ok {
		return fmt.Errorf("missing /routing_key")
	}
	var err error
	if sock.Host, sock.Port, err = splitHostPort(hostport, 5672); err != nil {
		return err
	}
	if ex, key, ok := strings.Cut(route, "?"); ok {
		sock.Exchange, sock.RoutingKey = ex, key
	} else {
		sock.RoutingKey = route
	}
	if sock.RoutingKey == "" {
		return fmt.Errorf("empty routing key")
	}
	return nil
}

func parseVirtual(sock *Socket, rest string) error {
	fields := strings.Fields(rest)
	if len(fields) == 0 {
		return fmt.Errorf("missing policy")
	}
	sock.Policy = strings.ToUpper(fields[0])
	switch sock.Policy {
	case PolicyParallel, PolicyFailover, PolicyRoundRobin:
	default:
		return fmt.Errorf("unknown policy %q (want PARALLEL, FAILOVER or ROUND-ROBIN)", fields[0])
	}
	if len(fields) == 1 {
		return fmt.Errorf("no members")
	}
	for _, f := range fields[1:] {
		if strings.HasPrefix(strings.ToLower(f), "virtual:") {
			return fmt.Errorf("member %q: virtual groups cannot be nested", f)
		}
		m, err := ParseSocket(f)
		if err != nil {
			return fmt.Errorf("member: %s", err.Error())
		}
		for _, prev := range sock.Members {
			if prev.String() == m.String() {
				return fmt.Errorf("member %q appears twice", f)
			}
		}
		sock.Members = append(sock.Members, m)
	}
	return nil
}

// detects reports whether a transport of this scheme can tell that an event
// did not arrive. udp: and unix: datagrams are fire and forget.
func (s Socket) detects() bool { return s.Scheme != "udp" && s.Scheme != "unix" }

// Warnings says what about a virtual group can lose events unnoticed: a
// member that cannot detect a failure (udp:, unix:) where the group relies on
// failures to move on. Other sockets have none.
func (s Socket) Warnings(o Options) []string {
	if s.Scheme != "virtual" {
		return nil
	}
	var out []string
	for i, m := range s.Members {
		if m.detects() {
			continue
		}
		switch {
		case s.Policy == PolicyFailover && i < len(s.Members)-1:
			out = append(out, fmt.Sprintf("FAILOVER member %d (%s) cannot detect a failed delivery, so the members after it are never tried: put it last", i+1, m))
		case s.Policy == PolicyRoundRobin:
			out = append(out, fmt.Sprintf("ROUND-ROBIN member %d (%s) cannot detect a failed delivery: the events rotated to it are lost if its receiver is down", i+1, m))
		case s.Policy == PolicyParallel && o.ParallelSuccess == SuccessAny:
			out = append(out, fmt.Sprintf("PARALLEL member %d (%s) cannot detect a failed delivery, so with parallel_success any it counts every event delivered", i+1, m))
		}
	}
	return out
}
