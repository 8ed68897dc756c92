"""Link utility accounts to registered units by unit code.

`records` reads a registry export and utility rosters, `addresses` and
`normalise` put addresses, ID numbers and names into comparable form, and
`engine.link` decides which unit each account belongs to.
"""
