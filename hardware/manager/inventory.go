package manager

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/rivetmetal/rivet/wire"
)

// InventoryContributor is a manager that adds to the hardware inventory.
type InventoryContributor interface {
	// ContributeInventory adds what the manager knows to inv (disks a
	// controller hides, the BMC, …). Contributors run one after another,
	// the least supported first, so a specific manager sees, and may
	// amend, what the generic one found. ErrNotHandled: nothing to add.
	ContributeInventory(ctx context.Context, inv *wire.Inventory) error
}

// Inventory builds the inventory from every contributor, the least
// supported first (managers of equal level in their listed order). A
// contributor's failure is logged and its contribution left out; only an
// inventory no contributor could add to is an error.
func (s *Set) Inventory(ctx context.Context) (*wire.Inventory, error) {
	inv := &wire.Inventory{BMCAddress: wire.NoBMCAddress, BMCv6Address: wire.NoBMCv6Address,
		Interfaces: []wire.NetworkInterface{}, Disks: []wire.Disk{}, CPU: wire.CPU{Flags: []string{}}}
	order := slices.Clone(s.managers)
	slices.SortStableFunc(order, func(a, b member) int { return int(a.Level - b.Level) })
	var errs []error
	added := false
	for _, m := range order {
		c, ok := m.m.(InventoryContributor)
		if !ok {
			continue
		}
		err := c.ContributeInventory(ctx, inv)
		switch {
		case errors.Is(err, ErrNotHandled):
		case err != nil:
			s.log.WarnContext(ctx, "hardware manager could not add to the inventory; carrying on without its part", "manager", m.Name, "error", err)
			errs = append(errs, fmt.Errorf("%s: %w", m.Name, err))
		default:
			added = true
		}
	}
	if !added {
		if len(errs) == 0 {
			errs = append(errs, ErrNoManager)
		}
		return nil, fmt.Errorf("hardware inventory: %w", errors.Join(errs...))
	}
	return inv, nil
}
