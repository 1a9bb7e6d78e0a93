package power

import "context"

// What a management controller keeps beyond power and boot devices:
// BIOS settings, firmware versions, virtual media and event
// subscriptions. Drivers implement the interfaces they can serve; the
// conductor answers for the others as Ironic does for its no-op
// interfaces (empty lists) or refuses.

// BIOSSetting is one BIOS setting (an entry of GET /v1/nodes/{id}/bios).
// The registry fields are nil when the BMC does not describe them.
type BIOSSetting struct {
	Name  string
	Value string
	// AttributeType is the registry's type (Enumeration, String,
	// Integer, Boolean, Password), "" when unknown.
	AttributeType   string
	AllowableValues []string
	LowerBound      *int
	UpperBound      *int
	MinLength       *int
	MaxLength       *int
	ReadOnly        *bool
	ResetRequired   *bool
	Unique          *bool
}

// BIOSReader is implemented by drivers that read a node's BIOS settings.
type BIOSReader interface {
	BIOSSettings(ctx context.Context, node Node) ([]BIOSSetting, error)
}

// FirmwareComponent is one firmware component of a node (an entry of GET
// /v1/nodes/{id}/firmware): "bios", "bmc", or "nic:<id>".
type FirmwareComponent struct {
	Component      string
	CurrentVersion string
}

// FirmwareReader is implemented by drivers that read a node's firmware
// versions.
type FirmwareReader interface {
	FirmwareComponents(ctx context.Context, node Node) ([]FirmwareComponent, error)
}

// VirtualMedia is one virtual media device of a node's BMC.
type VirtualMedia struct {
	Image      string
	Inserted   bool
	MediaTypes []string
}

// VirtualMediaDriver is implemented by drivers whose BMC serves virtual
// media: list the devices, insert an image into the first device of a
// type ("cdrom", "floppy", "dvd", "usb"), eject the images of the types.
type VirtualMediaDriver interface {
	VirtualMedia(ctx context.Context, node Node) ([]VirtualMedia, error)
	InsertMedia(ctx context.Context, node Node, deviceType, imageURL string) error
	EjectMedia(ctx context.Context, node Node, deviceTypes []string) error
}

// EventSubscription is a BMC event subscription (Redfish
// EventDestination), in the shape Ironic's redfish vendor passthru
// returns.
type EventSubscription struct {
	ID          string
	Destination string
	Context     string
	Protocol    string
	EventTypes  []string
	// HTTPHeaders are sent by the BMC with each event; never read back.
	HTTPHeaders map[string]string
}

// EventSubscriber is implemented by drivers whose BMC sends events.
type EventSubscriber interface {
	CreateSubscription(ctx context.Context, node Node, sub EventSubscription) (EventSubscription, error)
	DeleteSubscription(ctx context.Context, node Node, id string) error
	Subscriptions(ctx context.Context, node Node) ([]EventSubscription, error)
}
