"""Energy accounting every service shares: tariffs, the battery's model, the tally of a stretch of
time (costs, exports by cause) and the savings and payback a battery brings.

The dispatcher plans and replays with it, the recorder states what the house actually did with it:
one definition of each figure, and neither service imports the other.
"""
