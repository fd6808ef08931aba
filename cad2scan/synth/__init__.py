"""cad2scan.synth"""
