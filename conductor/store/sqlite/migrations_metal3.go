package sqlite

// migrationMetal3 adds the attributes columns: the node and port fields
// of Ironic's API up to 1.110 (store.NodeAttributes, store.PortAttributes)
// as one JSON object each.
var migrationMetal3 = migration{3, `
ALTER TABLE nodes ADD COLUMN attributes TEXT NOT NULL DEFAULT '{}';
ALTER TABLE ports ADD COLUMN attributes TEXT NOT NULL DEFAULT '{}';
`}
