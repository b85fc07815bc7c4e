/**
 * fleetctl completion bash|zsh|fish: a completion script written from the command tree itself, so
 * it knows every command and option this version has.
 *
 *   source <(fleetctl completion bash)                       # bash, or add it to ~/.bashrc
 *   fleetctl completion zsh > "${fpath[1]}/_fleetctl"         # zsh
 *   fleetctl completion fish > ~/.config/fish/completions/fleetctl.fish
 */
import type { Command } from 'commander';
import { CliError, EXIT } from '../exit.ts';
import type { Run } from './run.ts';

interface Node {
  readonly path: string[];
  readonly commands: string[];
  readonly options: string[];
}

function walk(command: Command, path: string[] = [], globals: string[] = []): Node[] {
  const options = [...globals, ...command.options.flatMap((o) => [o.long, o.short].filter((f): f is string => Boolean(f))), '--help'];
  const node = { path, commands: command.commands.map((c) => c.name()), options: [...new Set(options)] };
  const inherited = path.length === 0 ? options.filter((o) => o !== '--help' && o !== '--version' && o !== '-V') : globals;
  return [node, ...command.commands.flatMap((c) => walk(c, [...path, c.name()], inherited))];
}

function bash(nodes: Node[]): string {
  const cases = nodes.map((n) => `    "${n.path.join(' ')}") words="${[...n.commands, ...n.options].join(' ')}" ;;`).join('\n');
  return `# bash completion for fleetctl (fleetctl completion bash)
_fleetctl() {
  local cur path word words
  cur="\${COMP_WORDS[COMP_CWORD]}"
  path=""
  for word in "\${COMP_WORDS[@]:1:COMP_CWORD-1}"; do
    case "$word" in -*) ;; *) if _fleetctl_known "\${path:+$path }$word"; then path="\${path:+$path }$word"; fi ;; esac
  done
  case "$path" in
${cases}
    *) words="" ;;
  esac
  COMPREPLY=( $(compgen -W "$words" -- "$cur") )
}
_fleetctl_known() {
  case "$1" in
${nodes
  .filter((n) => n.path.length > 0)
  .map((n) => `    "${n.path.join(' ')}") return 0 ;;`)
  .join('\n')}
  esac
  return 1
}
complete -F _fleetctl fleetctl
`;
}

function zsh(nodes: Node[]): string {
  return `#compdef fleetctl
# zsh completion for fleetctl (fleetctl completion zsh)
${bash(nodes).replace('complete -F _fleetctl fleetctl\n', '')}
autoload -U +X bashcompinit && bashcompinit
complete -F _fleetctl fleetctl
`;
}

function fish(nodes: Node[]): string {
  const lines = ['# fish completion for fleetctl (fleetctl completion fish)', 'complete -c fleetctl -f'];
  for (const n of nodes) {
    const condition = n.path.length === 0 ? '__fish_use_subcommand' : `__fish_seen_subcommand_from ${n.path.at(-1)}`;
    for (const sub of n.commands) lines.push(`complete -c fleetctl -n '${condition}' -a '${sub}'`);
    for (const option of n.options.filter((o) => o.startsWith('--')))
      lines.push(`complete -c fleetctl -n '${condition}' -l '${option.slice(2)}'`);
  }
  return `${lines.join('\n')}\n`;
}

export function registerCompletion(program: Command, run: Run): void {
  program
    .command('completion')
    .description('Print a shell completion script (bash, zsh or fish)')
    .argument('[shell]', 'bash, zsh or fish', 'bash')
    .addHelpText(
      'after',
      '\nExamples:\n  source <(fleetctl completion bash)\n  fleetctl completion fish > ~/.config/fish/completions/fleetctl.fish',
    )
    .action((shell: string, _options, command: Command) =>
      run(command, async (ctx) => {
        const nodes = walk(program);
        const script = shell === 'bash' ? bash(nodes) : shell === 'zsh' ? zsh(nodes) : shell === 'fish' ? fish(nodes) : undefined;
        if (!script) throw new CliError(EXIT.usage, `completion ${shell}: choose bash, zsh or fish`);
        ctx.io.stdout.write(script);
      }),
    );
}
