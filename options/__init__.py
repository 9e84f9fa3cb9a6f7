"""The option files shipped with sd_plugin (package data: ``sd_plugin.options``); see the README."""
