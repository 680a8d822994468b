from collections import Counter


def summarize(items):
    """Counts the items by kind and sums their sizes."""
    kinds = Counter(item.get("kind", "unknown") for item in items)
    total = sum(int(item.get("size", 0)) for item in items)
    return {"count": len(items), "kinds": dict(kinds), "total_size": total}
