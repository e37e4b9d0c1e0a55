"""Deterministic sample data for the demo and the gallery examples.

    python gallery/generate_data.py --out data/demo --orders 1000
writes orders.csv and customers.csv; the same seed always gives the same rows.
"""

from __future__ import annotations

import argparse
import csv
import json
import random
from datetime import datetime, timedelta
from pathlib import Path

STATUSES = ("placed", "shipped", "delivered", "cancelled")
REGIONS = ("EU", "US", "APAC")


def write_customers(path: Path, count: int, rng: random.Random) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["customer_id", "name", "region"])
        for customer_id in range(1, count + 1):
            writer.writerow([customer_id, f"customer-{customer_id}", rng.choice(REGIONS)])


ORDER_COLUMNS = ["order_id", "customer_id", "amount", "status", "order_ts"]


def write_orders(path: Path, count: int, customers: int, rng: random.Random,
                 renames: dict[str, str] | None = None) -> int:  # fmt: skip
    """Writes `count` orders; about 2% are invalid (no amount or negative). Returns valid rows.

    `renames` simulates schema drift in the export, e.g. {"amount": "order_amount"}.
    """
    start = datetime(2026, 1, 1)
    valid = 0
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow([(renames or {}).get(name, name) for name in ORDER_COLUMNS])
        for order_id in range(1, count + 1):
            roll = rng.random()
            if roll < 0.01:
                amount = ""
            elif roll < 0.02:
                amount = f"{-rng.uniform(1, 50):.2f}"
            else:
                amount = f"{rng.uniform(1, 500):.2f}"
                valid += 1
            ts = start + timedelta(minutes=rng.randrange(0, 60 * 24 * 90))
            writer.writerow(
                [order_id, rng.randint(1, customers), amount, rng.choice(STATUSES), ts.isoformat(sep=" ")]
            )
    return valid


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="data/demo", type=Path)
    parser.add_argument("--orders", default=1000, type=int)
    parser.add_argument("--customers", default=100, type=int)
    parser.add_argument("--seed", default=7, type=int)
    parser.add_argument("--rename", action="append", default=[], metavar="OLD:NEW",
                        help="rename an orders column in the export (simulates upstream schema drift)")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    rng = random.Random(args.seed)
    write_customers(args.out / "customers.csv", args.customers, rng)
    renames = dict(item.split(":", 1) for item in args.rename)
    valid = write_orders(args.out / "orders.csv", args.orders, args.customers, rng, renames)
    # What a correct pipeline must publish, for the demo and tests to check against.
    (args.out / "expected.json").write_text(json.dumps({"valid_orders": valid}))
    print(f"wrote {args.orders} orders ({valid} valid) and {args.customers} customers to {args.out}")


if __name__ == "__main__":
    main()
