"""Storage backends behind the `Storage` Protocol of `llm_config.types` (ARCHITECTURE decision 2).

Owns: persistence of entries, versions, the audit chain and store settings, and the schema
migrations. Never: sees a plaintext secret, imports `core`, `server` or `cli`, or shows an unmasked
URL. Open a store with `open_storage(target, create=...)`.
"""

from llm_config.storage.base import mask_url, open_storage, store_exists

__all__ = ["mask_url", "open_storage", "store_exists"]
