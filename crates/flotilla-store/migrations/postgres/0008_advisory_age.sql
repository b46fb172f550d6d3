-- How old the advisory data a node was assessed against was, in whole days, when it was older
-- than the server's advisory_max_age (NULL: fresh, or not assessed for CVEs).
ALTER TABLE assessment_nodes ADD COLUMN advisories_age_days BIGINT;
