package manager

import (
	"context"
	"fmt"
	"log/slog"
	"slices"

	"github.com/rivetmetal/rivet/wire"
)

// Detail is a selected manager with its identity and level.
type Detail struct {
	Identity
	Level Level
}

// Set is the managers that support this machine, most supported first.
// It is immutable and safe for concurrent use.
type Set struct {
	managers []member
	log      *slog.Logger
}

type member struct {
	m Manager
	Detail
}

// Select evaluates each manager's support and keeps those above None,
// most supported first; managers of equal level keep the order they are
// given in. It fails when no manager is left, or when two selected
// managers share a class or a name (their steps or versions would be
// confused). A nil log means slog.Default().
func Select(ctx context.Context, log *slog.Logger, managers ...Manager) (*Set, error) {
	if log == nil {
		log = slog.Default()
	}
	s := &Set{log: log}
	classes, names := map[string]bool{}, map[string]bool{}
	for _, m := range managers {
		id := m.Identity()
		level := m.Support(ctx)
		if level <= None {
			log.Info("hardware manager does not support this machine", "manager", id.Name, "version", id.Version)
			continue
		}
		if id.Class == "" || id.Name == "" || id.Version == "" {
			return nil, fmt.Errorf("hardware manager %+v: class, name and version must all be set", id)
		}
		if classes[id.Class] || names[id.Name] {
			return nil, fmt.Errorf("hardware managers: two managers are called %s (%s)", id.Class, id.Name)
		}
		classes[id.Class], names[id.Name] = true, true
		log.Info("hardware manager selected", "manager", id.Name, "version", id.Version, "support", level.String())
		s.managers = append(s.managers, member{m: m, Detail: Detail{Identity: id, Level: level}})
	}
	if len(s.managers) == 0 {
		return nil, fmt.Errorf("hardware managers: none supports this machine: %w", ErrNoManager)
	}
	slices.SortStableFunc(s.managers, func(a, b member) int { return int(b.Level - a.Level) })
	return s, nil
}

// Details lists the selected managers, most supported first (IPA's
// get_managers_detail).
func (s *Set) Details() []Detail {
	out := make([]Detail, len(s.managers))
	for i, m := range s.managers {
		out[i] = m.Detail
	}
	return out
}

// Versions is hardware_manager_version: every selected manager's name and
// version. Step calls carrying other versions come from a different agent.
func (s *Set) Versions() wire.HardwareManagerVersion {
	v := wire.HardwareManagerVersion{}
	for _, m := range s.managers {
		v[m.Name] = m.Version
	}
	return v
}

// Inspection is the inspection data's list of managers, most supported
// first.
func (s *Set) Inspection() []wire.InspectionManager {
	out := make([]wire.InspectionManager, len(s.managers))
	for i, m := range s.managers {
		out[i] = wire.InspectionManager{Name: m.Name, Version: m.Version}
	}
	return out
}
