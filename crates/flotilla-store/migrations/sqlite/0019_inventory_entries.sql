-- Content-addressed inventory. A fleet's nodes mostly share their items (a few base images),
-- yet every item of every node was a row of its own under two fleet-wide indexes: at 10,000
-- nodes x 1,000 packages each report dirtied about a thousand scattered index pages, each
-- written whole to the WAL (12 reports/s). Now each distinct item of a type is stored once, in
-- `inventory_entries`, and a node's type is one row of `inventory_sets` holding its entries'
-- ids in the order sent (see src/sql/inventory.rs for the encoding). Entries no set refers to
-- any more are deleted by the retention sweep. Rows of 0003's `inventory_items` are moved here
-- when the store opens (src/sql/inventory.rs, `convert_item_rows`); that table is no longer
-- written.
CREATE TABLE inventory_entries (
    id        BIGINT PRIMARY KEY,
    -- Hex SHA-256 of the type name, a NUL byte and the item's JSON text.
    digest    TEXT NOT NULL UNIQUE,
    type_name TEXT NOT NULL,
    -- The type's naming field (Application name, File path, ...), for indexed equality.
    item_key  TEXT,
    item      TEXT NOT NULL
);
CREATE INDEX inventory_entries_by_key ON inventory_entries (type_name, item_key);

-- Type first: a fleet query reads one type's sets in node order.
CREATE TABLE inventory_sets (
    type_name TEXT NOT NULL,
    node_id   TEXT NOT NULL,
    entries   BYTEA NOT NULL,
    PRIMARY KEY (type_name, node_id)
);

-- Entry ids are handed out from this row's counter, which only grows (ids are never reused,
-- so a set can never come to name an entry it did not mean). `sweeps` counts the sweeps that
-- deleted entries: a server remembers entry ids only while it is unchanged.
CREATE TABLE inventory_entry_ids (
    id      INTEGER PRIMARY KEY,
    last_id BIGINT NOT NULL,
    sweeps  BIGINT NOT NULL
);
INSERT INTO inventory_entry_ids (id, last_id, sweeps) VALUES (1, 0, 0);
