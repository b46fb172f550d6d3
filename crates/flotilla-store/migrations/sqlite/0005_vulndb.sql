-- Advisory database (vulnerability assessment): raw OSV records by id, and an index by
-- (ecosystem key, package name) so matching a node reads only the advisories of its packages.
CREATE TABLE advisories (
    id              TEXT PRIMARY KEY,
    -- `modified` as published, and in microseconds since the epoch (what "newer" compares).
    modified        TEXT NOT NULL,
    modified_micros BIGINT NOT NULL,
    -- The record's JSON text exactly as imported.
    record          TEXT NOT NULL,
    imported_at     BIGINT NOT NULL
);

CREATE TABLE advisory_index (
    ecosystem   TEXT NOT NULL,
    package     TEXT NOT NULL,
    advisory_id TEXT NOT NULL REFERENCES advisories (id) ON DELETE CASCADE,
    PRIMARY KEY (ecosystem, package, advisory_id)
);

CREATE INDEX advisory_index_by_advisory ON advisory_index (advisory_id);
