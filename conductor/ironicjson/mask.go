// Package ironicjson renders the conductor's nodes and ports as Ironic's
// JSON documents: the API shapes (with links, fields hidden by
// microversion, and secrets masked), the lookup node, and the node and port
// dictionaries sent to the agent in step commands.
package ironicjson

import (
	"strings"

	"github.com/rivetmetal/rivet/wire"
)

// sensitiveKeys are the key fragments whose values are masked (the list
// oslo's mask_dict_password works from, lower-cased).
var sensitiveKeys = []string{"adminpass", "admin_pass", "password", "admin_password",
	"auth_token", "new_pass", "auth_password", "secret_uuid", "secret", "sys_pswd",
	"token", "configdrive", "chappassword", "encrypted_key", "private_key", "fernetkey",
	"sslkey", "passphrase", "cephxkey", "keystonekey", "keystonepass"}

// IsSensitiveKey reports whether a dictionary key names a secret.
func IsSensitiveKey(k string) bool {
	k = strings.ToLower(k)
	for _, s := range sensitiveKeys {
		if strings.Contains(k, s) {
			return true
		}
	}
	return false
}

// MaskDict returns a deep copy of m in which the values of sensitive keys
// are replaced by "******" (nested dictionaries included).
func MaskDict(m map[string]any) map[string]any {
	out := make(map[string]any, len(m))
	for k, v := range m {
		switch {
		case IsSensitiveKey(k):
			out[k] = wire.Masked
		default:
			out[k] = copyValue(v, true)
		}
	}
	return out
}

// CopyDict returns a deep copy of m (nil gives an empty map).
func CopyDict(m map[string]any) map[string]any {
	out := make(map[string]any, len(m))
	for k, v := range m {
		out[k] = copyValue(v, false)
	}
	return out
}

func copyValue(v any, mask bool) any {
	switch t := v.(type) {
	case map[string]any:
		if mask {
			return MaskDict(t)
		}
		return CopyDict(t)
	case []any:
		out := make([]any, len(t))
		for i, e := range t {
			out[i] = copyValue(e, mask)
		}
		return out
	default:
		return v
	}
}
