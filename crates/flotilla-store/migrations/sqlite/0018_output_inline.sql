-- A stream whose whole output fits its inline copy exactly (UTF-8 without NUL, within the
-- inline limit) is kept in the invocation row alone, without an artifact: for a fan-out of small
-- outputs that saves a file, its fsyncs and a read back per node and stream.
ALTER TABLE invocations ADD COLUMN stdout_whole BIGINT NOT NULL DEFAULT 0;
ALTER TABLE invocations ADD COLUMN stderr_whole BIGINT NOT NULL DEFAULT 0;
