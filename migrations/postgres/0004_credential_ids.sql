-- Credential ids, for issued secrets (AWS access keys, Azure/Okta/Databricks client secrets):
-- the provider names each secret it creates, and recovery must tell the ones rotator recorded
-- from one it created but never recorded.

-- The id of a stored credential: the login name of a chosen secret, the provider's id of an
-- issued one. NULL in rows written before this migration (the slot's configured user).
ALTER TABLE local_credentials ADD COLUMN credential_id TEXT;

-- The candidate's id: set at PREPARE for a chosen secret, when the provider answers for an
-- issued one (in the same write that seals its value).
ALTER TABLE local_attempts ADD COLUMN candidate_id TEXT;

-- The ids the provider held when an issued-secret attempt was prepared, newline-separated.
ALTER TABLE local_attempts ADD COLUMN ids_before TEXT;
