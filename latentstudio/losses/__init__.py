"""latentstudio.losses"""
