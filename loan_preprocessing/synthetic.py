"""A seeded generator of synthetic loan applications in the data set's format.

The project ships this sample as its default data (the real data set is not
ours to redistribute). Value sets and missing-value rates follow the real
training file; Loan_Status depends on the features much as in the real data,
with credit history dominating, so a model trained on it learns something
sensible. It is not a substitute for real data when judging a model.

    python -m loan_preprocessing.synthetic --rows 614 --seed 7 --out data/loan_sample.csv
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Final

import numpy as np
import pandas as pd

from loan_preprocessing.schema import APPROVED, ID_COLUMN, REJECTED, TARGET_COLUMN

# Shares of missing values per column in the real training file (n = 614).
MISSING_RATES: Final = {
    "Gender": 13 / 614,
    "Married": 3 / 614,
    "Dependents": 15 / 614,
    "Self_Employed": 32 / 614,
    "LoanAmount": 22 / 614,
    "Loan_Amount_Term": 14 / 614,
    "Credit_History": 50 / 614,
}
LEVEL_SHARES: Final = {
    "Gender": {"Male": 0.81, "Female": 0.19},
    "Married": {"Yes": 0.65, "No": 0.35},
    "Dependents": {"0": 0.58, "1": 0.17, "2": 0.17, "3+": 0.08},
    "Education": {"Graduate": 0.78, "Not Graduate": 0.22},
    "Self_Employed": {"No": 0.86, "Yes": 0.14},
    "Property_Area": {"Semiurban": 0.38, "Urban": 0.33, "Rural": 0.29},
}
TERM_SHARES: Final = {
    360: 0.853,
    180: 0.073,
    480: 0.025,
    300: 0.022,
    240: 0.007,
    84: 0.007,
    120: 0.005,
    60: 0.003,
    36: 0.003,
    12: 0.002,
}


def generate_applications(n_rows: int, seed: int) -> pd.DataFrame:
    """`n_rows` labelled applications with the real data's columns, in its order."""
    rng = np.random.default_rng(seed)

    def pick(shares: dict) -> np.ndarray:
        return rng.choice(
            np.array(list(shares), dtype=object),
            size=n_rows,
            p=np.array(list(shares.values())) / sum(shares.values()),
        )

    frame = pd.DataFrame({ID_COLUMN: [f"LPS{100000 + i}" for i in range(n_rows)]})
    for column in ("Gender", "Married", "Dependents", "Education", "Self_Employed"):
        frame[column] = pick(LEVEL_SHARES[column])
    graduate = frame["Education"] == "Graduate"
    frame["ApplicantIncome"] = np.round(
        rng.lognormal(mean=np.where(graduate, 8.3, 8.0), sigma=0.6)
    ).astype(np.int64)
    has_coapplicant = rng.random(n_rows) < np.where(frame["Married"] == "Yes", 0.65, 0.35)
    frame["CoapplicantIncome"] = np.where(
        has_coapplicant, np.round(rng.lognormal(mean=7.6, sigma=0.6, size=n_rows)), 0.0
    )
    income = frame["ApplicantIncome"] + frame["CoapplicantIncome"]
    frame["LoanAmount"] = np.clip(
        np.round(np.exp(0.45 * np.log(income) + 1.0 + rng.normal(0, 0.35, n_rows))), 9, 700
    ).astype(float)
    frame["Loan_Amount_Term"] = pick(TERM_SHARES).astype(float)
    frame["Credit_History"] = (rng.random(n_rows) < 0.845).astype(float)
    frame["Property_Area"] = pick(LEVEL_SHARES["Property_Area"])

    instalment_share = frame["LoanAmount"] * 1000 / frame["Loan_Amount_Term"] / (income + 1)
    logit = (
        -3.1
        + 4.4 * frame["Credit_History"]
        + 0.8 * (frame["Property_Area"] == "Semiurban")
        - 0.5 * (frame["Property_Area"] == "Rural")
        + 0.5 * (frame["Married"] == "Yes")
        + 0.3 * graduate
        - 6.0 * np.clip(instalment_share - 0.12, 0, None)
    )
    approved = rng.random(n_rows) < 1 / (1 + np.exp(-logit))
    frame[TARGET_COLUMN] = np.where(approved, APPROVED, REJECTED)

    for column, rate in MISSING_RATES.items():
        holes = rng.random(n_rows) < rate
        frame[column] = frame[column].astype(object).where(~holes, None)
    # Unknown credit history is approved a little less often than a good one,
    # as in the real data; decide it after the holes are placed.
    unknown = frame["Credit_History"].isna()
    frame.loc[unknown, TARGET_COLUMN] = np.where(
        rng.random(int(unknown.sum())) < 0.74, APPROVED, REJECTED
    )
    return frame


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=614)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    generate_applications(args.rows, args.seed).to_csv(args.out, index=False)
    print(f"wrote {args.rows} synthetic applications to {args.out}")


if __name__ == "__main__":
    main()
