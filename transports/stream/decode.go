package stream

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"

	"github.com/evq/evq"
)

// ErrBadParams means a params value is not a flat JSON object or array of
// strings, numbers, booleans and nulls.
var ErrBadParams = errors.New("bad params")

// DecodeParams reads the next JSON value from dec as event params, keeping
// their order: an object gives named params, an array unnamed ones, null
// none. dec must have UseNumber set so that integers stay exact. OpenSIPS's
// own {"":v,"":w} form gives unnamed params.
func DecodeParams(dec *json.Decoder) (named bool, params []evq.Param, err error) {
	tok, err := dec.Token()
	if err != nil {
		return false, nil, fmt.Errorf("%w: %w", ErrBadParams, err)
	}
	switch tok {
	case nil:
		return false, nil, nil
	case json.Delim('{'):
		allEmpty := true
		for dec.More() {
			kt, err := dec.Token()
			if err != nil {
				return false, nil, fmt.Errorf("%w: %w", ErrBadParams, err)
			}
			name := kt.(string)
			v, err := decodeValue(dec)
			if err != nil {
				return false, nil, fmt.Errorf("%w: param %q: %w", ErrBadParams, name, err)
			}
			if name != "" {
				allEmpty = false
			}
			params = append(params, evq.Param{Name: name, Value: v})
		}
		if _, err := dec.Token(); err != nil {
			return false, nil, fmt.Errorf("%w: %w", ErrBadParams, err)
		}
		if len(params) > 0 && allEmpty {
			return false, params, nil
		}
		for _, p := range params {
			if p.Name == "" {
				return false, nil, fmt.Errorf("%w: an empty param name among named params", ErrBadParams)
			}
		}
		return len(params) > 0, params, nil
	case json.Delim('['):
		for i := 0; dec.More(); i++ {
			v, err := decodeValue(dec)
			if err != nil {
				return false, nil, fmt.Errorf("%w: param %d: %w", ErrBadParams, i, err)
			}
			params = append(params, evq.Param{Value: v})
		}
		if _, err := dec.Token(); err != nil {
			return false, nil, fmt.Errorf("%w: %w", ErrBadParams, err)
		}
		return false, params, nil
	default:
		return false, nil, fmt.Errorf("%w: want an object, an array or null, got %v", ErrBadParams, tok)
	}
}

func decodeValue(dec *json.Decoder) (evq.Value, error) {
	tok, err := dec.Token()
	if err != nil {
		return evq.Value{}, err
	}
	switch v := tok.(type) {
	case string:
		return evq.String(v), nil
	case json.Number:
		return NumberValue(v.String())
	case bool:
		return evq.Bool(v), nil
	case nil:
		return evq.Null(), nil
	default:
		return evq.Value{}, fmt.Errorf("nested objects and arrays are not event values")
	}
}

// NumberValue turns a JSON number into an integer Value when it is one that
// fits in 64 bits, and into an exact float Value otherwise.
func NumberValue(num string) (evq.Value, error) {
	if n, err := strconv.ParseInt(num, 10, 64); err == nil {
		return evq.Int(n), nil
	}
	return evq.Float(num)
}
