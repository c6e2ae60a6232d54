package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"

	"github.com/vmihailenco/msgpack/v5"
)

// msgpackJSON shows a task's arguments or result, which are msgpack, as JSON.
// Empty input is null, as the library decodes a message without arguments
// to the zero value.
func msgpackJSON(raw []byte) (json.RawMessage, error) {
	if len(raw) == 0 {
		return json.RawMessage("null"), nil
	}
	dec := msgpack.NewDecoder(bytes.NewReader(raw))
	// The default map decoder takes string keys only; a Go map[int]T is
	// encoded with integer keys.
	dec.SetMapDecoder(func(d *msgpack.Decoder) (any, error) { return d.DecodeUntypedMap() })
	v, err := dec.DecodeInterface()
	if err != nil {
		return nil, fmt.Errorf("decode msgpack: %w", err)
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(jsonable(v)); err != nil {
		return nil, fmt.Errorf("msgpack to JSON: %w", err)
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// jsonable converts a decoded msgpack value to one encoding/json takes: map
// keys become strings (a Go map[int]T has integer keys), and floats JSON
// lacks (NaN, ±Inf) become strings. Binary stays []byte, which JSON shows in
// base64 as encoding/json does for a Go []byte argument.
func jsonable(v any) any {
	switch v := v.(type) {
	case map[string]any:
		for k, e := range v {
			v[k] = jsonable(e)
		}
		return v
	case map[any]any:
		m := make(map[string]any, len(v))
		for k, e := range v {
			m[mapKey(k)] = jsonable(e)
		}
		return m
	case []any:
		for i, e := range v {
			v[i] = jsonable(e)
		}
		return v
	case float64:
		return jsonFloat(v)
	case float32:
		return jsonFloat(float64(v))
	}
	return v
}

func mapKey(k any) string {
	switch k := k.(type) {
	case string:
		return k
	case []byte:
		return string(k)
	case nil:
		return "null"
	}
	return fmt.Sprint(k)
}

func jsonFloat(f float64) any {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return fmt.Sprint(f) // "NaN", "+Inf", "-Inf"
	}
	return f
}
