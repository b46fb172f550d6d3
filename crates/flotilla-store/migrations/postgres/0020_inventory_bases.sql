-- Shared bases for inventory sets. A fleet's nodes come from a few base images and differ in a
-- few percent of their packages, yet every node's set listed all of its ~1,000 entry ids, and a
-- fleet query read and checked ten million of them at 10,000 nodes. Now the first set of an
-- image becomes a base, and a set close to a base is stored as the few edits that turn the
-- base into it (src/sql/inventory/sets.rs). A base is never changed once written; the
-- retention sweep deletes the bases no set refers to.
CREATE TABLE inventory_bases (
    id        BIGINT PRIMARY KEY,
    type_name TEXT NOT NULL,
    entries   BYTEA NOT NULL
);
CREATE INDEX inventory_bases_by_type ON inventory_bases (type_name);

-- NULL: `entries` lists the set whole, as before; else `entries` holds edits of this base.
ALTER TABLE inventory_sets ADD COLUMN base_id BIGINT;
