-- What each desired-state step of an invocation reported (a JSON list of
-- {"step","action","changed","detail"}), as the agent sent it with its result. NULL: no step
-- reported a state (scripts only, or the invocation has not ended).
ALTER TABLE invocations ADD COLUMN state TEXT;
