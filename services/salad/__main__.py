from salad.cli.main import app

app(prog_name="salad")
