// Package jsonpatch applies RFC 6902 JSON Patch documents (the add,
// replace and remove operations Ironic's PATCH endpoints use) to decoded
// JSON values.
package jsonpatch

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
)

// Op is one patch operation.
type Op struct {
	Op    string          `json:"op"`
	Path  string          `json:"path"`
	Value json.RawMessage `json:"value,omitempty"`
}

// Pointer splits a JSON pointer ("/a/b~1c") into its unescaped tokens.
func Pointer(path string) ([]string, error) {
	if path == "" {
		return nil, nil
	}
	if !strings.HasPrefix(path, "/") {
		return nil, fmt.Errorf("invalid JSON pointer %q: must start with /", path)
	}
	toks := strings.Split(path[1:], "/")
	for i, t := range toks {
		toks[i] = strings.ReplaceAll(strings.ReplaceAll(t, "~1", "/"), "~0", "~")
	}
	return toks, nil
}

// Apply applies ops in order to doc, a JSON object, and returns the
// result; doc itself may be modified. The first failing operation stops
// the patch with an error naming it.
func Apply(doc map[string]any, ops []Op) (map[string]any, error) {
	var root any = doc
	for _, op := range ops {
		toks, err := Pointer(op.Path)
		if err != nil {
			return nil, err
		}
		if len(toks) == 0 {
			return nil, fmt.Errorf("operation %q on the whole document is not supported", op.Op)
		}
		switch op.Op {
		case "add", "replace":
			if len(op.Value) == 0 {
				return nil, fmt.Errorf("'value' is a required property of %q operations", op.Op)
			}
			var v any
			if err := json.Unmarshal(op.Value, &v); err != nil {
				return nil, fmt.Errorf("invalid value for %s: %w", op.Path, err)
			}
			root, err = set(root, toks, v, op.Op == "replace")
		case "remove":
			root, err = remove(root, toks)
		default:
			return nil, fmt.Errorf("unsupported patch operation %q", op.Op)
		}
		if err != nil {
			return nil, fmt.Errorf("%s %s: %w", op.Op, op.Path, err)
		}
	}
	m, ok := root.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("patch result is not an object")
	}
	return m, nil
}

// set adds or replaces the value at toks under node and returns the
// (possibly new) node.
func set(node any, toks []string, v any, mustExist bool) (any, error) {
	key, rest := toks[0], toks[1:]
	switch n := node.(type) {
	case map[string]any:
		if len(rest) == 0 {
			if _, ok := n[key]; mustExist && !ok {
				return nil, fmt.Errorf("can't replace a non-existent object '%s'", key)
			}
			n[key] = v
			return n, nil
		}
		child, ok := n[key]
		if !ok {
			return nil, fmt.Errorf("can't add to non-existent object '%s'", key)
		}
		c, err := set(child, rest, v, mustExist)
		if err != nil {
			return nil, err
		}
		n[key] = c
		return n, nil
	case []any:
		if len(rest) == 0 && key == "-" && !mustExist {
			return append(n, v), nil
		}
		i, err := index(key, len(n), !mustExist && len(rest) == 0)
		if err != nil {
			return nil, err
		}
		if len(rest) == 0 {
			if mustExist {
				n[i] = v
				return n, nil
			}
			n = append(n, nil)
			copy(n[i+1:], n[i:])
			n[i] = v
			return n, nil
		}
		c, err := set(n[i], rest, v, mustExist)
		if err != nil {
			return nil, err
		}
		n[i] = c
		return n, nil
	default:
		return nil, fmt.Errorf("can't address '%s' in a %T", key, node)
	}
}

func remove(node any, toks []string) (any, error) {
	key, rest := toks[0], toks[1:]
	switch n := node.(type) {
	case map[string]any:
		child, ok := n[key]
		if !ok {
			return nil, fmt.Errorf("can't remove a non-existent object '%s'", key)
		}
		if len(rest) == 0 {
			delete(n, key)
			return n, nil
		}
		c, err := remove(child, rest)
		if err != nil {
			return nil, err
		}
		n[key] = c
		return n, nil
	case []any:
		i, err := index(key, len(n), false)
		if err != nil {
			return nil, err
		}
		if len(rest) == 0 {
			return append(n[:i], n[i+1:]...), nil
		}
		c, err := remove(n[i], rest)
		if err != nil {
			return nil, err
		}
		n[i] = c
		return n, nil
	default:
		return nil, fmt.Errorf("can't address '%s' in a %T", key, node)
	}
}

func index(tok string, n int, allowEnd bool) (int, error) {
	i, err := strconv.Atoi(tok)
	if err != nil || i < 0 || i > n || (i == n && !allowEnd) {
		return 0, fmt.Errorf("array index %q out of range", tok)
	}
	return i, nil
}
