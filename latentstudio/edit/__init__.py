"""latentstudio.edit"""
