// Package jsoncol encodes and decodes the JSON columns in which the SQL
// stores keep the maps of nodes and ports (instance_info, extra, …), in one
// column order shared by both stores.
package jsoncol

import (
	"encoding/json"
	"fmt"

	segjson "github.com/segmentio/encoding/json"

	"github.com/rivetmetal/rivet/conductor/store"
)

// NodeMaps returns the node's JSON-column maps in column order:
// instance_info, driver_info, driver_internal_info, properties, extra,
// deploy_step.
func NodeMaps(n *store.Node) []*map[string]any {
	return []*map[string]any{&n.InstanceInfo, &n.DriverInfo, &n.DriverInternalInfo,
		&n.Properties, &n.Extra, &n.DeployStep}
}

// PortMaps returns the port's JSON-column maps in column order: extra,
// local_link_connection, internal_info.
func PortMaps(p *store.Port) []*map[string]any {
	return []*map[string]any{&p.Extra, &p.LocalLinkConnection, &p.InternalInfo}
}

// Encode is a JSON column's value: the map as JSON text, "{}" when empty.
// The text is what encoding/json's Marshal writes (keys sorted, HTML
// characters escaped), written by segmentio/encoding, which writes the same
// bytes in less than half the time: every node transaction encodes the
// columns it changed (TestEncodeIsEncodingJSON, FuzzEncodeIsEncodingJSON).
func Encode(m map[string]any) (string, error) {
	if len(m) == 0 {
		return "{}", nil
	}
	b, err := segjson.Marshal(m)
	if err != nil {
		return "", fmt.Errorf("encode JSON column: %w", err)
	}
	return string(b), nil
}

// EncodeAll encodes maps (from NodeMaps or PortMaps) into column values.
func EncodeAll(maps []*map[string]any) ([]any, error) {
	vals := make([]any, len(maps))
	for i, m := range maps {
		s, err := Encode(*m)
		if err != nil {
			return nil, err
		}
		vals[i] = s
	}
	return vals, nil
}

// Decode sets *dst from a JSON column's text; an empty column is an empty
// map, never nil.
func Decode[T string | []byte](raw T, dst *map[string]any) error {
	m := map[string]any{}
	if len(raw) > 0 {
		if err := json.Unmarshal([]byte(raw), &m); err != nil {
			return fmt.Errorf("decode JSON column: %w", err)
		}
	}
	*dst = m
	return nil
}

// DecodeAll decodes column texts into maps (from NodeMaps or PortMaps), in
// the same order.
func DecodeAll[T string | []byte](raws []T, maps []*map[string]any) error {
	if len(raws) != len(maps) {
		return fmt.Errorf("decode JSON columns: %d values for %d columns", len(raws), len(maps))
	}
	for i, raw := range raws {
		if err := Decode(raw, maps[i]); err != nil {
			return err
		}
	}
	return nil
}

// EncodeAttributes is the attributes column's value: the struct (a
// store.NodeAttributes or store.PortAttributes) as JSON text, "{}" when
// every field is at its zero value. Like Encode, it writes encoding/json's
// bytes with segmentio/encoding.
func EncodeAttributes(v any) (string, error) {
	b, err := segjson.Marshal(v)
	if err != nil {
		return "", fmt.Errorf("encode attributes column: %w", err)
	}
	return string(b), nil
}

// DecodeAttributes sets *dst from the attributes column's text; an empty
// column leaves the zero value.
func DecodeAttributes[T string | []byte, A store.NodeAttributes | store.PortAttributes](raw T, dst *A) error {
	var a A
	if len(raw) > 0 {
		if err := json.Unmarshal([]byte(raw), &a); err != nil {
			return fmt.Errorf("decode attributes column: %w", err)
		}
	}
	*dst = a
	return nil
}
