"""Reading and writing the pipeline's files: source records (jsonl, json, csv, parquet, the Hub) with
one reject type for rows that cannot be used, table schemas with atomic parquet writes, and the Hub
upload."""
