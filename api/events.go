package api

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strconv"
	"time"

	"github.com/evq/evq"
	"github.com/evq/evq/transports/stream"
)

// decodeRaise reads {"event":..,"params":..} or {"events":[..]} keeping the
// order of params and the exact value of numbers.
func decodeRaise(body io.Reader) (events []*evq.Event, batch bool, err error) {
	dec := json.NewDecoder(body)
	dec.UseNumber()
	if err := expectDelim(dec, '{', "the body"); err != nil {
		return nil, false, err
	}
	single := &evq.Event{}
	var haveSingle bool
	for dec.More() {
		key, err := dec.Token()
		if err != nil {
			return nil, false, badRequest("the body is not valid JSON: %s", err.Error())
		}
		switch key {
		case "event", "params":
			haveSingle = true
			if err := decodeEventField(dec, key.(string), single, ""); err != nil {
				return nil, false, err
			}
		case "events":
			batch = true
			if err := expectDelim(dec, '[', `"events"`); err != nil {
				return nil, false, err
			}
			for i := 0; dec.More(); i++ {
				ev, err := decodeEventObject(dec, fmt.Sprintf("events[%d].", i))
				if err != nil {
					return nil, false, err
				}
				events = append(events, ev)
			}
			if _, err := dec.Token(); err != nil {
				return nil, false, badRequest(`"events" is not valid JSON: %s`, err.Error())
			}
		default:
			return nil, false, badRequest("unknown field %q: want \"event\" and \"params\", or \"events\"", key)
		}
	}
	if _, err := dec.Token(); err != nil {
		return nil, false, badRequest("the body is not valid JSON: %s", err.Error())
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, false, badRequest("the body has data after its JSON object")
	}
	switch {
	case batch && haveSingle:
		return nil, false, badRequest(`give either "event" or "events", not both`)
	case batch:
		if len(events) == 0 {
			return nil, false, badRequest(`"events" is empty`)
		}
		return events, true, nil
	case single.Name == "":
		return nil, false, badRequest(`missing field "event" (the event name, such as "E_ACC_CDR")`)
	}
	return []*evq.Event{single}, false, nil
}

func expectDelim(dec *json.Decoder, d json.Delim, what string) error {
	tok, err := dec.Token()
	if err != nil {
		return badRequest("%s is not valid JSON: %s", what, err.Error())
	}
	if tok != d {
		return badRequest("%s must be a JSON %s", what, map[json.Delim]string{'{': "object", '[': "array"}[d])
	}
	return nil
}

func decodeEventObject(dec *json.Decoder, prefix string) (*evq.Event, error) {
	if err := expectDelim(dec, '{', prefix[:len(prefix)-1]); err != nil {
		return nil, err
	}
	ev := &evq.Event{}
	for dec.More() {
		key, err := dec.Token()
		if err != nil {
			return nil, badRequest("%s: %s", prefix, err.Error())
		}
		k, _ := key.(string)
		if k != "event" && k != "params" {
			return nil, badRequest("unknown field %q", prefix+k)
		}
		if err := decodeEventField(dec, k, ev, prefix); err != nil {
			return nil, err
		}
	}
	if _, err := dec.Token(); err != nil {
		return nil, badRequest("%s: %s", prefix, err.Error())
	}
	if ev.Name == "" {
		return nil, badRequest("missing field %q", prefix+"event")
	}
	return ev, nil
}

func decodeEventField(dec *json.Decoder, key string, ev *evq.Event, prefix string) error {
	if key == "event" {
		tok, err := dec.Token()
		name, ok := tok.(string)
		if err != nil || !ok {
			return badRequest("field %q must be a string", prefix+"event")
		}
		if err := evq.ValidateName(name); err != nil {
			return fmt.Errorf("field %q: %w", prefix+"event", err)
		}
		ev.Name = name
		return nil
	}
	named, params, err := stream.DecodeParams(dec)
	if err != nil {
		return fmt.Errorf("field %q: %w", prefix+"params", err)
	}
	ev.Named, ev.Params = named, params
	return nil
}

func (s *Server) raise(w http.ResponseWriter, r *http.Request) {
	events, batch, err := decodeRaise(r.Body)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if err := s.engine.RaiseBatch(r.Context(), events); err != nil {
		s.fail(w, r, err)
		return
	}
	if !batch {
		writeJSON(w, http.StatusOK, map[string]uint64{"seq": events[0].Seq})
		return
	}
	seqs := make([]uint64, len(events))
	for i, ev := range events {
		seqs[i] = ev.Seq
	}
	writeJSON(w, http.StatusOK, map[string][]uint64{"seqs": seqs})
}

type eventInfo struct {
	Name          string `json:"name"`
	Count         uint64 `json:"count"`
	FirstSeq      uint64 `json:"first_seq,omitempty"`
	LastSeq       uint64 `json:"last_seq,omitempty"`
	Subscriptions int    `json:"subscriptions"`
}

// eventInfos lists stored event names and subscribed ones, by name.
func (s *Server) eventInfos() ([]eventInfo, error) {
	names, err := s.log.Names()
	if err != nil {
		return nil, err
	}
	byName := make(map[string]*eventInfo)
	for _, n := range names {
		byName[n.Name] = &eventInfo{Name: n.Name, Count: n.Count, FirstSeq: n.FirstSeq, LastSeq: n.LastSeq}
	}
	for _, st := range s.engine.Subscriptions() {
		info := byName[st.Event]
		if info == nil {
			info = &eventInfo{Name: st.Event}
			byName[st.Event] = info
		}
		info.Subscriptions++
	}
	out := make([]eventInfo, 0, len(byName))
	for _, info := range byName {
		out = append(out, *info)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

func (s *Server) listEvents(w http.ResponseWriter, r *http.Request) {
	infos, err := s.eventInfos()
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"events": infos, "last_seq": s.log.LastSeq()})
}

// appendEventJSON writes ev as {"seq":..,"time":..,"event":..,"params":..}
// with params in their order.
func appendEventJSON(b []byte, ev *evq.Event) []byte {
	b = append(b, `{"seq":`...)
	b = strconv.AppendUint(b, ev.Seq, 10)
	b = append(b, `,"time":"`...)
	b = ev.Time.UTC().AppendFormat(b, time.RFC3339Nano)
	b = append(b, `","event":`...)
	b = stream.AppendString(b, ev.Name)
	if len(ev.Params) > 0 {
		b = append(b, `,"params":`...)
		open, close := byte('['), byte(']')
		if ev.Named {
			open, close = '{', '}'
		}
		b = append(b, open)
		for i, p := range ev.Params {
			if i > 0 {
				b = append(b, ',')
			}
			if ev.Named {
				b = stream.AppendString(b, p.Name)
				b = append(b, ':')
			}
			b = stream.AppendValue(b, p.Value)
		}
		b = append(b, close)
	}
	return append(b, '}')
}

// tail streams events of one name as newline-delimited JSON as they are
// raised, from ?from=SEQ or from now.
func (s *Server) tail(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	if err := evq.ValidateName(name); err != nil {
		s.fail(w, r, err)
		return
	}
	cursor := s.log.LastSeq()
	if from := r.URL.Query().Get("from"); from != "" {
		n, err := strconv.ParseUint(from, 10, 64)
		if err != nil || n == 0 {
			s.fail(w, r, badRequest("from=%q: want a seq number from 1", from))
			return
		}
		cursor = n - 1
	}
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.WriteHeader(http.StatusOK)
	flusher, _ := w.(http.Flusher)
	if flusher != nil {
		flusher.Flush()
	}
	var buf []byte
	for {
		notify := s.log.Notify()
		events, err := s.log.Read(name, cursor, 256)
		if err != nil {
			return
		}
		if len(events) > 0 {
			buf = buf[:0]
			for _, ev := range events {
				buf = appendEventJSON(buf, ev)
				buf = append(buf, '\n')
			}
			cursor = events[len(events)-1].Seq
			if _, err := w.Write(buf); err != nil {
				return
			}
			if flusher != nil {
				flusher.Flush()
			}
			continue
		}
		select {
		case <-notify:
		case <-r.Context().Done():
			return
		case <-s.stopping():
			return
		}
	}
}
