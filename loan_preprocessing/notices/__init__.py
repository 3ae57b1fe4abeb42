"""What a denied applicant receives: the adverse-action notice, rendered from a
decision record."""
