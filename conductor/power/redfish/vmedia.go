package redfish

import (
	"context"
	"fmt"
	"slices"
	"strings"

	rf "github.com/stmcginnis/gofish/redfish"

	"github.com/rivetmetal/rivet/conductor/power"
)

var _ power.VirtualMediaDriver = (*Driver)(nil)

// mediaTypes maps the device types of Ironic's vmedia API onto Redfish
// VirtualMedia MediaTypes.
var mediaTypes = map[string]rf.VirtualMediaType{
	"cdrom":  rf.CDMediaType,
	"dvd":    rf.DVDMediaType,
	"floppy": rf.FloppyMediaType,
	"usb":    rf.USBStickMediaType,
}

// virtualMedia lists the VirtualMedia of the managers of the session's
// system (Links.ManagedBy), sorted by @odata.id (gofish fetches a
// collection's members concurrently and loses the BMC's order).
func (s *session) virtualMedia() ([]*rf.VirtualMedia, error) {
	managers, err := s.system.ManagedBy()
	if err != nil {
		return nil, fmt.Errorf("get managers: %w", err)
	}
	var out []*rf.VirtualMedia
	for _, m := range managers {
		l, err := m.VirtualMedia()
		if err != nil {
			return nil, fmt.Errorf("list virtual media of %s: %w", m.ODataID, err)
		}
		slices.SortFunc(l, func(a, b *rf.VirtualMedia) int { return strings.Compare(a.ODataID, b.ODataID) })
		out = append(out, l...)
	}
	return out, nil
}

// VirtualMedia implements power.VirtualMediaDriver: the virtual media
// devices of the system's managers, their MediaTypes in Redfish's
// spelling (CD, DVD, Floppy, USBStick).
func (d *Driver) VirtualMedia(ctx context.Context, node power.Node) ([]power.VirtualMedia, error) {
	const op = "list virtual media"
	s, err := d.connect(ctx, node, op)
	if err != nil {
		return nil, err
	}
	defer s.close()
	l, err := s.virtualMedia()
	if err != nil {
		return nil, fmt.Errorf("redfish: node %s: %s: %w", node.UUID, op, err)
	}
	out := make([]power.VirtualMedia, len(l))
	for i, v := range l {
		types := make([]string, len(v.MediaTypes))
		for j, t := range v.MediaTypes {
			types[j] = string(t)
		}
		out[i] = power.VirtualMedia{Image: v.Image, Inserted: v.Inserted, MediaTypes: types}
	}
	return out, nil
}

// InsertMedia implements power.VirtualMediaDriver as Ironic does: the
// image goes, write-protected, into the first device of the type that
// holds no image (VirtualMedia.InsertMedia); a device already holding this
// image makes it a no-op.
func (d *Driver) InsertMedia(ctx context.Context, node power.Node, deviceType, imageURL string) error {
	op := "insert virtual media " + deviceType
	mt, ok := mediaTypes[deviceType]
	if !ok {
		return fmt.Errorf("redfish: node %s: %s: unknown device type: %w", node.UUID, op, power.ErrUnsupported)
	}
	s, err := d.connect(ctx, node, op)
	if err != nil {
		return err
	}
	defer s.close()
	l, err := s.virtualMedia()
	if err != nil {
		return fmt.Errorf("redfish: node %s: %s: %w", node.UUID, op, err)
	}
	for _, v := range l {
		if !slices.Contains(v.MediaTypes, mt) {
			continue
		}
		if v.Inserted {
			if v.Image == imageURL {
				return nil
			}
			continue
		}
		if err := v.InsertMedia(imageURL, true, true); err != nil {
			return fmt.Errorf("redfish: node %s: %s into %s: %w", node.UUID, op, v.ODataID, err)
		}
		d.cfg.Logger.Debug("redfish virtual media inserted", "node", node.UUID, "device", v.ODataID)
		return nil
	}
	return fmt.Errorf("redfish: node %s: %s: no free virtual media device of type %s: %w", node.UUID, op, mt, power.ErrUnsupported)
}

// EjectMedia implements power.VirtualMediaDriver: it ejects the image of
// every device of the types (of all devices when none) that holds one
// (VirtualMedia.EjectMedia).
func (d *Driver) EjectMedia(ctx context.Context, node power.Node, deviceTypes []string) error {
	const op = "eject virtual media"
	var want []rf.VirtualMediaType
	for _, t := range deviceTypes {
		mt, ok := mediaTypes[t]
		if !ok {
			return fmt.Errorf("redfish: node %s: %s: unknown device type %q: %w", node.UUID, op, t, power.ErrUnsupported)
		}
		want = append(want, mt)
	}
	s, err := d.connect(ctx, node, op)
	if err != nil {
		return err
	}
	defer s.close()
	l, err := s.virtualMedia()
	if err != nil {
		return fmt.Errorf("redfish: node %s: %s: %w", node.UUID, op, err)
	}
	for _, v := range l {
		if !v.Inserted || (len(want) > 0 && !slices.ContainsFunc(v.MediaTypes, func(t rf.VirtualMediaType) bool { return slices.Contains(want, t) })) {
			continue
		}
		if err := v.EjectMedia(); err != nil {
			return fmt.Errorf("redfish: node %s: %s from %s: %w", node.UUID, op, v.ODataID, err)
		}
		d.cfg.Logger.Debug("redfish virtual media ejected", "node", node.UUID, "device", v.ODataID)
	}
	return nil
}
