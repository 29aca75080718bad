"""Risk rules, decisions and holds arrive with the fraud issue; nothing is stored yet."""
