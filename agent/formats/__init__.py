"""Text forms of results and points: line protocol written and read back, CSV and JSONL."""
