"""The read-only dashboard (monitor §3.5, §4.7; a copy-trader page): view models and the Streamlit app."""
