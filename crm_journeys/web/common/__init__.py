"""Operations the UI and the REST API both offer (drafts, backtests, email preview, team
admin, action-error moves), mapped to ``ApiError`` once so both front ends say the same thing.
"""
