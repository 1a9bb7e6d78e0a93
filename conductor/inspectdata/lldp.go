package inspectdata

import (
	"encoding/json"
	"fmt"

	"github.com/rivetmetal/rivet/conductor/lldp"
	"github.com/rivetmetal/rivet/wire"
)

// ParseLLDP is the LLDPParser of conductor/lldp (Ironic's parse_lldp
// hook): the inventory's interfaces and the lldp_raw of the agent's
// "lldp" collector (may be empty) parsed into parsed_lldp, each neighbour
// as Ironic's dictionary. An inventory whose interfaces cannot be read
// yields nothing and a problem.
func ParseLLDP(inventory json.RawMessage, lldpRaw json.RawMessage) (map[string]any, []error) {
	var inv struct {
		Interfaces []wire.NetworkInterface `json:"interfaces"`
	}
	if err := json.Unmarshal(inventory, &inv); err != nil {
		return nil, []error{fmt.Errorf("parse_lldp: inventory interfaces: %w", err)}
	}
	var raw map[string][]wire.LLDPTLV
	var problems []error
	if len(lldpRaw) > 0 && string(lldpRaw) != "null" {
		if err := json.Unmarshal(lldpRaw, &raw); err != nil {
			problems = append(problems, fmt.Errorf("parse_lldp: lldp_raw: %w", err))
			raw = nil
		}
	}
	parsed, errs := lldp.ParseInterfaces(inv.Interfaces, raw)
	problems = append(problems, errs...)
	if len(parsed) == 0 {
		return nil, problems
	}
	out := make(map[string]any, len(parsed))
	for name, n := range parsed {
		b, err := json.Marshal(n)
		if err != nil {
			problems = append(problems, fmt.Errorf("parse_lldp: %s: %w", name, err))
			continue
		}
		var m map[string]any
		if err := json.Unmarshal(b, &m); err != nil {
			problems = append(problems, fmt.Errorf("parse_lldp: %s: %w", name, err))
			continue
		}
		out[name] = m
	}
	return out, problems
}
