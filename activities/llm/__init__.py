"""Model calls: one activity, providers behind one seam, cost from a price table."""
