-- Inventory: per node, one row per type (its content hash) and one row per item.
CREATE TABLE inventory_types (
    node_id      TEXT NOT NULL,
    type_name    TEXT NOT NULL,
    content_hash TEXT NOT NULL,
    item_count   BIGINT NOT NULL,
    collected_at BIGINT NOT NULL,
    updated_at   BIGINT NOT NULL,
    PRIMARY KEY (node_id, type_name)
);

-- Type first: fleet queries scan one type across nodes in node order; a node's own items are
-- an equality prefix too.
CREATE TABLE inventory_items (
    type_name TEXT NOT NULL,
    node_id   TEXT NOT NULL,
    seq       BIGINT NOT NULL,
    -- The type's naming field (Application name, File path, ...), for indexed equality.
    item_key  TEXT,
    item      TEXT NOT NULL,
    PRIMARY KEY (type_name, node_id, seq)
);
CREATE INDEX inventory_items_by_key ON inventory_items (type_name, item_key, node_id);

-- Collection settings per target group (group:NAME).
CREATE TABLE inventory_settings (
    group_name       TEXT PRIMARY KEY,
    interval_seconds BIGINT,
    files            TEXT NOT NULL,
    updated_at       BIGINT NOT NULL
);
