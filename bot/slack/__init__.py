"""The Slack surface: `/keepwell`, cards, App Home, buttons and modals (CONTRACT §6)."""
